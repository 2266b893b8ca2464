"""A joining PC gives its token's secret to the node that made the token, and to no other."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import web

from node import DataDir
from node._cluster import async_invite, async_join
from node._pki import Invite, NodePki, PkiError, make_csr, new_key, sign_node
from tests.node.nodes import new_data_dir, open_node


async def test_a_server_with_another_cluster_certificate_gets_nothing(tmp_path: Path) -> None:
    """Every member holds the CA key (a revoked one, a stolen PC): a server presenting a
    certificate it signed, at the address the new PC was given, must not get the secret."""
    inviter = await open_node(new_data_dir(tmp_path, "a"))
    try:
        token = await async_invite(inviter, "admin")
    finally:
        await inviter.async_close()
    pki = NodePki(inviter.data.pki)
    key, key_pem = new_key()
    forged = sign_node(
        pki.ca_key.read_bytes(), pki.ca_cert.read_bytes(), make_csr(key, "e" * 32), "e" * 32
    )
    (tmp_path / "forged.pem").write_bytes(forged)
    (tmp_path / "forged.key").write_bytes(key_pem)
    heard: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        heard.append(f"{request.method} {request.path} {await request.text()}")
        return web.Response(body=pki.ca_cert.read_bytes())  # the real CA, to look right

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "forged.pem", tmp_path / "forged.key")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    target = DataDir(tmp_path / "b")
    try:
        with pytest.raises(PkiError, match="not the node that made this token"):
            await async_join(
                target, name="Poste B", zone="propre", token=token, peer=f"127.0.0.1:{port}"
            )
    finally:
        await runner.cleanup()
    assert heard == []  # not even a request: the certificate is refused first
    assert Invite.decode(token).secret not in " ".join(heard)
    assert not target.root.exists()
