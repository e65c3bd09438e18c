"""Interop with FFmpeg's WHIP muxer (recognised by ``s=FFmpegPublishSession`` in the offer)
needs three workarounds, all on by default (``ffmpeg_compat``), each for a defect on
FFmpeg's side that was traced on the wire:

1. FFmpeg builds on GnuTLS (PyAV's wheels, and distributions that build FFmpeg against
   GnuTLS) make their DTLS certificate with ``gnutls_sec_param_to_pk_bits(GNUTLS_PK_ECDSA,
   GNUTLS_SEC_PARAM_MEDIUM)``, i.e. an ECDSA **P-224** key, and FFmpeg offers
   ``a=setup:passive``, so it is the DTLS server and signs its ServerKeyExchange with that
   key.  In DTLS 1.2, OpenSSL (the one aiortc uses via pyOpenSSL/cryptography, 3.5+/4.x)
   only accepts a peer ECDSA key whose curve is one of its own supported groups
   (``tls12_check_peer_sigalg`` -> ``tls1_check_group_id``), and P-224 is no longer a TLS
   group at all there (RFC 8422 deprecated it; OpenSSL now builds without it): the client
   aborts with ``wrong curve`` and a fatal ``illegal_parameter`` alert.  DTLS 1.0 has no
   signature_algorithms and OpenSSL's legacy path has no curve check, and GnuTLS accepts
   DTLS 1.0, so for these offers our ClientHello offers DTLS 1.0 only, with the
   ECDHE-ECDSA CBC suites (``ffmpeg_dtls="1.0"``).  FFmpeg built on OpenSSL uses P-256 and
   refuses DTLS 1.0 (OpenSSL's default security level); set ``ffmpeg_dtls="1.2"`` for it.
2. FFmpeg answers no STUN binding requests once its handshake is done, so aiortc's ICE
   consent freshness checks (RFC 7675) fail and aioice closes the connection after ~30 s.
   For FFmpeg sessions they are switched off; the media idle timeout detects a dead peer.
3. FFmpeg consumes the first DTLS datagram it receives (the one that tells it the handshake
   started) without handing it to its TLS library, which then waits for the ClientHello
   retransmission: 1 s of OpenSSL's timer.  For FFmpeg sessions the first DTLS datagram is
   sent a second time 50 ms later.

These reach into aiortc and aioice internals, which is why aiortc is pinned (pyproject);
:func:`check_hooks` runs when the WHIP ingest is built and fails loudly if any is gone.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate

FFMPEG_HELLO_REPEAT = 0.05  # s: when the first DTLS datagram is sent again (item 3)


def check_hooks() -> None:
    """Raise RuntimeError when an aiortc/aioice internal these workarounds use is missing."""
    import inspect

    from aioice.ice import Connection
    from aiortc import rtcpeerconnection
    from aiortc.rtcicetransport import RTCIceTransport

    missing = []
    if not callable(getattr(RTCCertificate, "_create_ssl_context", None)):
        missing.append("RTCCertificate._create_ssl_context")
    if "self.__certificates" not in inspect.getsource(rtcpeerconnection.RTCPeerConnection.__init__):
        missing.append("RTCPeerConnection.__certificates")
    if not callable(getattr(Connection, "query_consent", None)):
        missing.append("aioice Connection.query_consent")
    transport_src = inspect.getsource(RTCIceTransport)
    missing += [f"RTCIceTransport.{n}" for n in ("_connection", "_send") if f"self.{n}" not in transport_src]
    if missing:
        raise RuntimeError("the FFmpeg WHIP workarounds need aiortc internals this version lacks: "
                           + ", ".join(missing) + "; install the aiortc version pyproject pins, or run "
                           "with ffmpeg_compat off")


class Dtls10Certificate(RTCCertificate):
    """aiortc's certificate, with a DTLS context that only speaks DTLS 1.0 (see the module
    docstring, item 1).  The key, the certificate and so the fingerprint are unchanged."""

    def _create_ssl_context(self, srtp_profiles):  # noqa: ANN001 - aiortc's signature
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_max_proto_version(0xFEFF)  # DTLS1_VERSION
        # SECLEVEL=0: DTLS 1.0 signs with ECDSA-SHA1, which OpenSSL refuses above level 0.
        ctx.set_cipher_list(b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0")
        return ctx


def use_dtls10(pc: RTCPeerConnection) -> None:
    """Item 1: the connection's certificate, answering with DTLS 1.0 only (before the answer)."""
    cert = pc._RTCPeerConnection__certificates[0]
    pc._RTCPeerConnection__certificates = [Dtls10Certificate(cert._key, cert._cert)]


async def _no_consent_checks() -> None:
    return None


def fix_transports(pc: RTCPeerConnection, spawn: Callable[[Coroutine], asyncio.Task]) -> None:
    """Items 2 and 3 on every ICE transport of ``pc`` (after the answer is made): no consent
    checks, and the first DTLS datagram sent twice (``spawn`` runs the repeat)."""
    seen = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        ice = dtls.transport if dtls is not None else None
        if ice is None or id(ice) in seen:
            continue
        seen.add(id(ice))
        ice._connection.query_consent = _no_consent_checks  # item 2
        ice._send = _repeat_first_dtls(ice._send, spawn)  # item 3


def _repeat_first_dtls(send, spawn):
    repeated = False

    async def wrapper(data: bytes) -> None:
        nonlocal repeated
        await send(data)
        if not repeated and data and 19 < data[0] < 64:  # the first DTLS record
            repeated = True

            async def again() -> None:
                await asyncio.sleep(FFMPEG_HELLO_REPEAT)
                with contextlib.suppress(Exception):
                    await send(data)

            spawn(again())

    return wrapper
