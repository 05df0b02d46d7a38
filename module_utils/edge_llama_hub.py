# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""The Hugging Face hub as edge-llama's modules reach it: one home for the endpoint, the file URL, the
token (never across a redirect to another host), the split parts and the messages a user reads.

Used by hf_model (the download) and gguf_info (the header before the download), so that both find the
same file: a mirror named by the module's endpoint or by HF_ENDPOINT, and a model the hub only has in
parts (TheBloke's C(<file>-split-a), C(<file>-split-b), ... for files over 50 GB). Standard library only:
gguf_info runs with the target's system python before anything is installed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import string

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import quote, urlparse
from ansible.module_utils.six.moves.urllib.request import HTTPRedirectHandler, Request, build_opener

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_PARTS = 26


class HubError(Exception):
    """A failure with a message meant for the user (never holding the token)."""


def endpoint(value=None, environ=None):
    """The hub to ask: the module's endpoint, else HF_ENDPOINT (as huggingface_hub reads it), else
    huggingface.co. Without a trailing slash."""
    environ = os.environ if environ is None else environ
    return (value or environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def file_url(hub, repo_id, revision, filename):
    """The hub's resolve URL of a file at a revision (what huggingface_hub's hf_hub_url gives)."""
    return "%s/%s/resolve/%s/%s" % (hub.rstrip("/"), quote(repo_id, safe="/"), quote(revision, safe=""),
                                    quote(filename, safe="/"))


def split_names(filename, count=MAX_PARTS):
    """The names of the parts of a file the hub holds split: <file>-split-a, <file>-split-b, ..."""
    return ["%s-split-%s" % (filename, letter) for letter in string.ascii_lowercase[:count]]


class NoAuthAcrossHosts(HTTPRedirectHandler):
    """Follow redirects, but never carry the token to another host (the CDN that serves LFS files)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = HTTPRedirectHandler.redirect_request(self, req, fp, code, msg, headers, newurl)
        if new is not None and urlparse(newurl).netloc != urlparse(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def auth_headers(token, user_agent):
    headers = {"User-Agent": user_agent}
    if token:
        headers["Authorization"] = "Bearer %s" % token
    return headers


def open_url(url, headers, timeout, method=None):
    """urlopen with redirects that drop the token on a change of host."""
    return build_opener(NoAuthAcrossHosts).open(Request(url, headers=headers, method=method), timeout=timeout)


def scrub(text, token):
    """text with the token replaced, for messages and logs."""
    text = str(text)
    return text.replace(token, "***") if token else text


def http_problem(code, what, url, token):
    """The message for an HTTP error status, with what to do about it."""
    if code in (401, 403):
        advice = ("the token was refused or lacks access to this gated or private repository" if token
                  else "the repository is gated or private: accept its terms on the hub and set token")
        return "HTTP %d for %s (%s): %s" % (code, what, url, advice)
    if code == 404:
        return "HTTP 404 for %s (%s): check repo_id, filename and revision" % (what, url)
    return "HTTP %d for %s (%s)" % (code, what, url)


def request(hub, repo_id, revision, name, headers, timeout, method=None, token=None, missing_ok=False):
    """Open one file of a repository; every failure is a HubError that names the repository, the file,
    the URL and what to do. With missing_ok, a 404 returns None instead (the caller looks elsewhere)."""
    url = file_url(hub, repo_id, revision, name)
    try:
        return open_url(url, headers, timeout, method)
    except HTTPError as exc:
        if exc.code == 404 and missing_ok:
            return None
        raise HubError(http_problem(exc.code, "%s/%s at revision %s" % (repo_id, name, revision), url,
                                    token)) from None
    except (URLError, OSError) as exc:
        raise HubError(unreachable(hub, exc)) from None


def open_file(hub, repo_id, revision, filename, token=None, timeout=30, user_agent="edge-llama",
              headers=None, method=None):
    """Open a file on the hub. Returns (response, url, parts): parts is [] for a file the hub holds
    whole, or the names of its -split-X parts, in which case the response is the first part's.

    A 404 for the file itself makes it look for <file>-split-a; anything else is a HubError naming the
    repository, the file, the URL and what to do."""
    request_headers = auth_headers(token, user_agent)
    request_headers.update(headers or {})
    response = request(hub, repo_id, revision, filename, request_headers, timeout, method, token, missing_ok=True)
    if response is not None:
        return response, file_url(hub, repo_id, revision, filename), []
    first = split_names(filename)[0]
    response = request(hub, repo_id, revision, first, request_headers, timeout, method, token, missing_ok=True)
    if response is None:
        missing = http_problem(404, "%s/%s at revision %s" % (repo_id, filename, revision),
                               file_url(hub, repo_id, revision, filename), token)
        raise HubError("%s (and there is no %s either)" % (missing, first))
    return (response, file_url(hub, repo_id, revision, first),
            parts_of(hub, repo_id, revision, filename, request_headers, timeout, token))


def parts_of(hub, repo_id, revision, filename, headers, timeout, token=None):
    """The names of a split file's parts, asked for one after the other (HEAD) until one is missing."""
    names = []
    for name in split_names(filename):
        response = request(hub, repo_id, revision, name, headers, timeout, "HEAD", token, missing_ok=True)
        if response is None:
            break
        response.close()
        names.append(name)
    return names


def sizes_of(hub, repo_id, revision, names, token=None, timeout=30, user_agent="edge-llama"):
    """Content-Length of each named file (HEAD, redirects followed); None where the server gives none."""
    sizes = []
    for name in names:
        response = request(hub, repo_id, revision, name, auth_headers(token, user_agent), timeout, "HEAD", token)
        length = response.headers.get("Content-Length")
        response.close()
        sizes.append(int(length) if length and length.isdigit() else None)
    return sizes


def unreachable(hub, exc):
    reason = getattr(exc, "reason", exc)
    return "cannot reach %s (%s): check the endpoint (or HF_ENDPOINT) and the network" % (hub, reason)
