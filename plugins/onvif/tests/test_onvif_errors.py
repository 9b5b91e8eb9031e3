"""The boundary: every exception the ONVIF library raises becomes one of the core's errors, with the password
scrubbed from its message. (The same paths run for real against ipycam and the Profile G device elsewhere.)"""

from __future__ import annotations

import aiohttp
import pytest
import zeep.exceptions
from consentcam import CredentialsRejected, DeviceUnreachable, PluginError
from consentcam_onvif.device import DEVICE_ERRORS, to_core_error
from lxml import etree
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError

SECRET = "s3cr:t/p@ss"
NOT_AUTHORIZED = etree.QName("http://www.onvif.org/ver10/error", "NotAuthorized")


@pytest.mark.parametrize(("exc", "expected", "words"), [
    (zeep.exceptions.Fault("Sender not authorized", subcodes=[NOT_AUTHORIZED]), CredentialsRejected, "refused the credentials"),
    (zeep.exceptions.Fault("denied", subcodes=[NOT_AUTHORIZED]), CredentialsRejected, "refused the credentials"),
    (ONVIFAuthError("bad"), CredentialsRejected, "refused the credentials"),
    (zeep.exceptions.TransportError("no", status_code=401), CredentialsRejected, "refused the credentials"),
    (zeep.exceptions.TransportError("no", status_code=503), DeviceUnreachable, "HTTP 503"),
    (aiohttp.ClientConnectionError("refused"), DeviceUnreachable, "no answer"),
    (ConnectionRefusedError(111, "Connection refused"), DeviceUnreachable, "no answer"),
    (TimeoutError(), DeviceUnreachable, "timed out"),
    (ONVIFTimeoutError("slow"), DeviceUnreachable, "no answer"),
    (zeep.exceptions.Fault("ActionNotSupported"), PluginError, "SOAP fault"),
    (zeep.exceptions.XMLSyntaxError("broken"), PluginError, "unexpected answer"),
    (ONVIFError(f"Unknown failure at http://admin:{SECRET}@192.0.2.1/"), PluginError, "unexpected answer"),
    (ValueError("bad xs:dateTime"), PluginError, "unexpected answer"),
])
def test_library_errors_become_core_errors(exc, expected, words):
    assert isinstance(exc, DEVICE_ERRORS)
    error = to_core_error(exc, "reading device information", (SECRET,))
    assert type(error) is expected and words in error.detail and "reading device information" in error.detail
    assert SECRET not in error.detail


def test_a_secret_in_a_message_is_masked_as_is_and_percent_encoded():
    exc = ONVIFError("GET rtsp://owner:s3cr%3At%2Fp%40ss@192.0.2.1/ and s3cr:t/p@ss")
    detail = to_core_error(exc, "asking", (SECRET,)).detail
    assert SECRET not in detail and "s3cr%3At" not in detail and "***" in detail
