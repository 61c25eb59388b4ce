"""Anchor: the plainest asyncio upper-case echo (a Protocol, data_received -> write).

usage: python asyncio_echo.py PORT [uvloop]
"""

import asyncio
import contextlib
import sys


class Upper(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data.upper())


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Upper, "127.0.0.1", port, backlog=4096)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]} model=anchor-asyncio",
          flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop

        uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1])))
