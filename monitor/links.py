"""One spelling per link, so the same story reached through two feeds is recognised as one.

Adapters put ``canonical_url(link)`` into ``Mention.extra["canonical_url"]``;
story clustering compares those. Only what never changes the page is
removed: tracking parameters, the fragment, default ports, the case of the
host, a trailing slash, credentials. The scheme and ``www.`` are kept: sites
that serve different pages on them exist. Story clustering asks the same
normaliser (``link_key``) for a looser key without them.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that say how someone arrived, not what they look at (story clustering uses them too).
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "oly_", "_hs")
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid", "igshid",
    "igsh", "mc_cid", "mc_eid", "mkt_tok", "vero_id", "wickedid", "_ga", "_gl", "ref", "ref_src", "ref_url",
    "referrer", "cmpid", "share", "si", "spm", "smid", "sr_share", "ncid", "ocid", "s_cid", "__twitter_impression",
})
DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters that carry a credential (a private feed's ?token=...): kept in the config only, never
# stored, emailed or logged (monitor/logs.py redacts them by this same name pattern).
SECRET_PARAM_NAME = (r"(?:[a-z0-9]+[_.-])*(?:token|secret|password|passwd|api_?key|apikey|key|signature|sig)"
                     r"(?:[_.-][a-z0-9]+)*")
_SECRET_PARAM = re.compile(SECRET_PARAM_NAME, re.IGNORECASE)


def is_secret_param(name: str) -> bool:
    return _SECRET_PARAM.fullmatch(name) is not None


def public_url(url: str) -> str:
    """``url`` without the credentials it may carry: ``user:password@`` and secret-named query parameters.

    Everything else is left exactly as it was; a URL that cannot be parsed is returned unchanged.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret = [k for k, _ in query if is_secret_param(k)]
    if "@" not in parts.netloc and not secret:
        return url
    kept = urlencode([(k, v) for k, v in query if not is_secret_param(k)]) if secret else parts.query
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, kept, parts.fragment))


def is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def with_credentials_of(url: str, configured: str) -> str:
    """``url`` (stored without credentials) with those of ``configured`` put back, on the same host only:
    a feed that moved within its site still authenticates, and no credential goes to another host."""
    try:
        parts, origin = urlsplit(url), urlsplit(configured)
    except ValueError:
        return url
    if parts.hostname != origin.hostname:
        return url
    userinfo = origin.netloc.rpartition("@")[0]
    query = parse_qsl(parts.query, keep_blank_values=True)
    have = {k for k, _ in query}
    missing = [(k, v) for k, v in parse_qsl(origin.query, keep_blank_values=True)
               if is_secret_param(k) and k not in have]
    if not userinfo and not missing:
        return url
    netloc = f"{userinfo}@{parts.netloc.rpartition('@')[2]}" if userinfo else parts.netloc
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query + missing) if missing else parts.query))


# Host prefixes that name the same site (mobile, old Reddit, AMP): one story, though not always one page.
SAME_SITE_PREFIXES = ("www.", "m.", "old.", "amp.")


def canonical_url(url: str) -> str:
    """``url`` without tracking parameters, credentials, fragment, default port or trailing slash; host in lower
    case.

    Anything that is not an absolute http(s) URL is returned unchanged.
    """
    return link_key(url) or url


def link_key(url: str | None, *, same_story: bool = False) -> str | None:
    """The one normaliser of links: ``canonical_url``'s spelling, or None for anything that is not an absolute
    http(s) URL.

    ``same_story`` makes a key for story clustering rather than a link to open: without the scheme and a
    ``www.``/``m.``/``old.``/``amp.`` host prefix, so a page reached over http and https, or on a site's mobile
    host, is one story.
    """
    if not url or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname  # already lower case
    if same_story:
        prefix = next((p for p in SAME_SITE_PREFIXES if host.startswith(p) and host.count(".") > 1), "")
        host = host[len(prefix):]
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    # No user:password@ and no secret parameters: credentials never name a page.
    path = parts.path.rstrip("/")
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not is_tracking_param(k) and not is_secret_param(k)]
    # Sorted, so two links that list the same parameters in another order are the same link.
    query = urlencode(sorted(kept), doseq=True)
    if same_story:
        return urlunsplit(("", host, path, query, "")).lstrip("/")
    return urlunsplit((scheme, host, path or "/", query, ""))
