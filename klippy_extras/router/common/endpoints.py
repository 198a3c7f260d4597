# The module's API endpoints: an error is the request's reply, never an
# exception handed to Klipper's webhooks.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging


def register(printer, path, handler):
    """Registers handler(web_request) for the API method path. What it
    raises (web_request.error, a G-code error) becomes the error reply
    here: Snapmaker's U1 fork passes an error raised to its webhooks to its
    exception manager, which shows it on the printer's screen, and a
    peer's refused or bad request is no fault of that printer."""
    command_error = printer.command_error
    def endpoint(web_request):
        try:
            handler(web_request)
        except command_error as e:
            web_request.set_error(web_request.error(str(e)))
        except Exception as e:
            # Klipper would shut down: nothing may escape an endpoint
            logging.exception("router: %s", path)
            web_request.set_error(web_request.error(
                "%s: internal error %s" % (path, type(e).__name__)))
    printer.lookup_object('webhooks').register_endpoint(path, endpoint)
