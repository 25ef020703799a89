"""The SMTP transport against real aiosmtpd servers: STARTTLS, TLS, login, and a server that hangs."""

from __future__ import annotations

import time

import pytest

from monitor.alert import deliver_pending
from monitor.config import SmtpSettings
from monitor.mail import SmtpTransport, build_message
from tests.servers.smtp import SilentServer, SmtpServer
from tests.test_alerts import mention, setup  # noqa: F401  (the setup fixture)


def _message(n: int = 1):
    return build_message(sender="monitor@test.local", recipient="oncall@test.local", subject=f"test {n}",
                         text="body", html="<p>body</p>", message_id=f"<t{n}@test>")


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_with_login_delivers_and_verifies_the_certificate(tmp_path, mode):
    with SmtpServer(tls=mode, login=("alerts", "s3cret-pass"), ca_dir=tmp_path) as server:
        settings = SmtpSettings(host="127.0.0.1", port=server.port, username="alerts", password="s3cret-pass",
                                starttls=mode == "starttls", ssl=mode == "ssl", ca_file=server.ca_file, timeout=5)
        SmtpTransport(settings=settings).send(_message())
        assert server.logins == ["alerts"]
        assert [str(m["Subject"]) for _, m in server.messages] == ["test 1"]

        # Without the CA that signed the server's certificate, nothing is sent in the clear instead.
        untrusted = settings.model_copy(update={"ca_file": None})
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            SmtpTransport(settings=untrusted).send(_message(2))
        assert len(server.messages) == 1


def test_server_requiring_starttls_refuses_a_plain_login(tmp_path):
    import smtplib
    with SmtpServer(tls="starttls", login=("alerts", "pw"), ca_dir=tmp_path) as server:
        settings = SmtpSettings(host="127.0.0.1", port=server.port, username="alerts", password="pw", timeout=5)
        with pytest.raises(smtplib.SMTPException):
            SmtpTransport(settings=settings).send(_message())
        assert server.messages == []


def test_ssl_and_starttls_together_is_a_config_error():
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="choose one of ssl"):
        SmtpSettings(host="127.0.0.1", ssl=True, starttls=True)


def test_wrong_password_keeps_alerts_queued_and_ends_the_round(tmp_path, setup):  # noqa: F811
    with SmtpServer(tls="starttls", login=("alerts", "right"), ca_dir=tmp_path) as server:
        config, store, pipeline, _ = setup(smtp_port=server.port)
        pipeline.process("reddit", _poll())
        settings = config.email.smtp.model_copy(update={"starttls": True, "username": "alerts", "password": "wrong",
                                                        "ca_file": server.ca_file})
        delivery = deliver_pending(store, SmtpTransport(settings=settings), config)
        assert (delivery.sent, delivery.pending) == (0, 2)
        assert "SMTPAuthenticationError" in delivery.connection_error
        # A refused login is the same for every alert: only the first was tried.
        assert [r["attempts"] for r in store.query("SELECT attempts FROM alerts ORDER BY id")] == [1, 0]
        assert server.messages == []


def test_a_server_that_never_answers_times_out_and_keeps_alerts(setup):  # noqa: F811
    with SilentServer() as silent:
        config, store, pipeline, _ = setup(smtp_port=silent.port)
        pipeline.process("reddit", _poll())
        settings = config.email.smtp.model_copy(update={"timeout": 0.5})
        started = time.monotonic()
        delivery = deliver_pending(store, SmtpTransport(settings=settings), config)
        elapsed = time.monotonic() - started
        assert (delivery.sent, delivery.pending) == (0, 2)
        assert "timed out" in delivery.connection_error
        # One timeout ends the round instead of one timeout per queued alert.
        assert elapsed < 5 * settings.timeout


def _poll():
    from monitor.source import Poll
    return Poll(mentions=[mention("a", "RED"), mention("b", "AMBER")])
