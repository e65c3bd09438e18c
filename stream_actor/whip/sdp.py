"""The SDP side of WHIP: which offers can be answered, and an answer's candidates in the
order publishers that try only the first one need."""
from __future__ import annotations

from aiortc.sdp import SessionDescription


class BadOffer(Exception):
    """The offer cannot be answered: 400 invalid_request with this message."""


def is_ffmpeg_offer(offer: str) -> bool:
    """FFmpeg's WHIP muxer: ``o=FFmpeg ...`` and ``s=FFmpegPublishSession``."""
    for line in offer.splitlines()[:4]:
        if line.startswith("o=FFmpeg ") or line.strip() == "s=FFmpegPublishSession":
            return True
    return False


def check_offer(offer: str) -> list[str]:
    """The media kinds an offer sends, or ``BadOffer`` saying why it is unusable."""
    if not offer.startswith("v=0"):
        raise BadOffer("not an SDP offer (it must start with v=0)")
    try:
        desc = SessionDescription.parse(offer)
    except Exception as e:  # aiortc's parser raises whatever the text provokes
        raise BadOffer(f"unparseable SDP: {type(e).__name__}") from None
    kinds = []
    for media in desc.media:
        if media.kind not in ("audio", "video") or media.port == 0:
            continue
        if media.direction not in (None, "sendonly", "sendrecv"):
            continue
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise BadOffer(f"{media.kind} section without ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadOffer(f"{media.kind} section without a DTLS fingerprint")
        kinds.append(media.kind)
    if not kinds:
        raise BadOffer("the offer sends no audio or video")
    if kinds.count("audio") > 1 or kinds.count("video") > 1:
        raise BadOffer("at most one audio and one video track")
    return kinds


def rewrite_answer(sdp: str, public_ip: str | None) -> str:
    """Candidates in the order WHIP clients that try only the first one need: the public
    IP first (when configured), then IPv4 host candidates, then the rest."""
    lines = sdp.split("\r\n")
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        cands = [ln for ln in section if ln.startswith("a=candidate:")]
        if not cands:
            out.extend(section)
            return

        def v6(line: str) -> bool:
            parts = line.split()
            return len(parts) > 4 and ":" in parts[4]

        ordered = sorted(cands, key=v6)
        extra = []
        if public_ip is not None:
            for line in ordered:
                parts = line.split()
                if len(parts) >= 8 and parts[2].lower() == "udp" and parts[7] == "host" and not v6(line):
                    parts[0] = "a=candidate:livecutpublic"
                    parts[4] = public_ip
                    extra.append(" ".join(parts))
                    break
        ordered = extra + ordered
        first = True
        for line in section:
            if line.startswith("a=candidate:"):
                if first:
                    out.extend(ordered)
                    first = False
            elif line.startswith("c=IN ") and extra:
                fam = "IP6" if ":" in public_ip else "IP4"
                out.append(f"c=IN {fam} {public_ip}")
            else:
                out.append(line)

    for line in lines:
        if line.startswith("m=") and section:
            flush()
            section = []
        section.append(line)
    flush()
    return "\r\n".join(out)
