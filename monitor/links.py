"""One spelling per link, so the same story reached through two feeds is recognised as one.

Adapters put ``canonical_url(link)`` into ``Mention.extra["canonical_url"]``;
story clustering compares those. Only what never changes the page is
removed: tracking parameters, the fragment, default ports, the case of the
host, a trailing slash. The scheme and ``www.`` are kept: sites that serve
different pages on them exist.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that say how someone arrived, not what they look at (story clustering uses them too).
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "oly_", "_hs")
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid", "igshid",
    "igsh", "mc_cid", "mc_eid", "mkt_tok", "vero_id", "wickedid", "_ga", "_gl", "ref", "ref_src", "ref_url",
    "referrer", "cmpid", "share", "si", "spm", "smid", "sr_share", "ncid", "ocid", "s_cid", "__twitter_impression",
})
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """``url`` without tracking parameters, fragment, default port or trailing slash; host in lower case.

    Anything that is not an absolute http(s) URL is returned unchanged.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return url
    host = parts.hostname  # already lower case
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if parts.username or parts.password:
        host = f"{parts.username or ''}{':' + parts.password if parts.password else ''}@{host}"
    path = parts.path.rstrip("/") or "/"
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_tracking_param(k)]
    # Sorted, so two links that list the same parameters in another order are the same link.
    query = urlencode(sorted(kept), doseq=True)
    return urlunsplit((scheme, host, path, query, ""))
