"""Typed errors raised by the palm identity package.

Every error carries a short machine-readable ``code`` and a human-readable
``reason``; the storefront maps them to HTTP status codes in one table.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base class of every error raised by :mod:`identity`.

    ``outcomes``: when the error refuses an enrolment after its captures were examined,
    each capture's (accepted, reason) in request order; empty otherwise.
    """

    code = "identity_error"

    def __init__(self, reason: str, *, outcomes: tuple[tuple[bool, str], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcomes = outcomes


class InvalidImageError(IdentityError):
    """The bytes are empty, not a decodable image, or of an unusable size."""

    code = "invalid_image"


class AcquisitionError(IdentityError):
    """Failure to acquire (FTA): the image decoded, but no usable palm ROI was found.

    ``reason`` names the quality check that failed (no hand, too dark, blurred, ...).
    """

    code = "failure_to_acquire"


class TemplateFormatError(IdentityError):
    """Template bytes are truncated, of an unknown version, or otherwise invalid."""

    code = "invalid_template"


class RetiredTemplateError(TemplateFormatError):
    """Template bytes of a retired format version (1 or 2): valid when written, but the
    current matcher cannot score them; the palm must be enrolled again."""

    code = "retired_template"


class EnrolmentError(IdentityError):
    """An enrolment was refused (too few usable captures, duplicate palm, ...).

    ``compared_subjects``: the other enrolled persons whose stored templates the duplicate
    check decrypted and compared before refusing (empty when it did not get that far, or
    when only the enrolling person's own templates were compared), so the caller can audit
    that biometric access; ``matched_subjects``: those of them whose palm matched (the
    reason for the refusal). ``duplicate``: refused by the duplicate check (the palm is
    already enrolled, for another person or for this one), i.e. after stored templates
    were decrypted.
    """

    code = "enrolment_refused"

    def __init__(self, reason: str, *, outcomes: tuple[tuple[bool, str], ...] = (),
                 compared_subjects: tuple[str, ...] = (),
                 matched_subjects: tuple[str, ...] = (), duplicate: bool = False) -> None:
        super().__init__(reason, outcomes=outcomes)
        self.compared_subjects = compared_subjects
        self.matched_subjects = matched_subjects
        self.duplicate = duplicate


class TemplateDecryptionError(IdentityError):
    """A stored template failed authenticated decryption (wrong key or tampering)."""

    code = "template_decryption_failed"


class DuplicateTemplateError(IdentityError):
    """A template id is already in the search index (FAISS itself would accept it)."""

    code = "duplicate_template"


class KeyFileError(IdentityError):
    """The template key file is missing, of the wrong length, or readable by others."""

    code = "key_file_invalid"
