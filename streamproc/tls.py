"""One rule for client TLS contexts (the MQTT sink, the NATS cluster connection): files checked and
named before ssl sees them, the CA and client certificate loaded, errors one line with the config
key, credentials redacted."""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Callable, Optional

from .redact import redact

ErrorType = Callable[[str], Exception]  # message -> the exception of the caller's kind


def client_context(
    tls: Any, key: str, peer: str, error: ErrorType, *, insecure: bool = False
) -> Optional[ssl.SSLContext]:
    """The context the `tls` section (enabled, ca_file, cert_file, key_file) asks for, or None
    when it is off; `insecure` skips the host name check. `key` names the section in messages
    (`sinks.mqtt.tls`), `peer` the server (`MQTT`)."""
    if not tls.enabled:
        return None
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    for name, path in files.items():  # name the file; ssl would say only "[Errno 2]"
        if path is not None and not Path(path).is_file():
            what = "no such file" if not Path(path).exists() else "not a file"
            raise error(f"{key}.{name} {path}: {what}")
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise error(f"{peer} TLS set-up failed: {redact(exc)} (check {key})") from None
    if insecure:
        context.check_hostname = False
    return context
