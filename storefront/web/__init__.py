"""Server-rendered pages served by the API's own app (Jinja2, no front-end build).

* ``/console``: the staff console (staffed checkout, review queue, refunds, tills);
* ``/portal``: the shopper portal (trips, receipts, disputes, palms, export, deletion,
  retention, consent, opt-out);
* ``/kiosk``: the enrolment kiosk (consent text and palm captures).

Pages call the same service layer as the JSON API, with the same roles; sign-in is a
cookie holding the same token (see :mod:`storefront.web.auth`).
"""

from storefront.web.app import WEB_PREFIXES, install_web

__all__ = ["WEB_PREFIXES", "install_web"]
