"""The shopper privacy portal: transparency, export, deletion, retention and consent."""
