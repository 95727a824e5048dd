"""A search spread over processes with keras-tuner's own engine: which process this is, from the variables
keras-tuner reads, and the checks that turn its long waits and tracebacks into one sentence.

KERASTUNER_TUNER_ID names the process ("chief", or a worker's own ID such as "tuner0"), and
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT where the chief serves the oracle over gRPC. The chief serves
and writes the search's results; each worker asks it for trials and trains them. Without the variables a
search is one process, as before.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from core.errors import LabError

VARIABLES = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
SINGLE_ID = "tuner0"  # keras-tuner's ID for the one process of an undistributed search
READY = "ready, waiting for the chief"  # what a worker prints once it can take trials


@dataclass(frozen=True)
class Role:
    kind: str  # "single", "chief" or "worker"
    tuner_id: str = SINGLE_ID
    ip: str | None = None
    port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def role(env=None) -> Role:
    """This process's part in the search; LabError when the variables are half set."""
    env = os.environ if env is None else env
    given = [name for name in VARIABLES if env.get(name)]
    if not given:
        return Role("single")
    missing = [name for name in VARIABLES if name not in given]
    if missing:
        raise LabError(f"a distributed search needs all of {', '.join(VARIABLES)}, but {', '.join(missing)} "
                       f"{'is' if len(missing) == 1 else 'are'} not set; set {'it' if len(missing) == 1 else 'them'} "
                       "(scripts/launch_search.py does) or unset the others for a search in one process.")
    try:
        port = int(env["KERASTUNER_ORACLE_PORT"])
    except ValueError:
        raise LabError(f"KERASTUNER_ORACLE_PORT must be a port number, got {env['KERASTUNER_ORACLE_PORT']!r}.") \
            from None
    tuner_id = env["KERASTUNER_TUNER_ID"]
    kind = "chief" if "chief" in tuner_id else "worker"  # keras-tuner's own rule
    return Role(kind, tuner_id, env["KERASTUNER_ORACLE_IP"], port)


def check_port_free(r: Role) -> None:
    """LabError when the chief's port is taken: gRPC would otherwise fail later, or share the port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a chief restarted on its port is welcome
        try:
            s.bind((r.ip, r.port))
        except OSError as e:
            raise LabError(f"the chief cannot serve on {r.address} ({e.strerror}); choose a free "
                           "KERASTUNER_ORACLE_PORT, or stop the process that uses it.") from None


def wait_for_chief(r: Role, seconds: float) -> None:
    """LabError when no chief answers at the address within `seconds` (keras-tuner itself waits an hour)."""
    import grpc

    # gRPC backs off up to minutes between attempts; short backoffs let every waiting worker see the chief at once
    channel = grpc.insecure_channel(r.address, options=[("grpc.initial_reconnect_backoff_ms", 200),
                                                        ("grpc.min_reconnect_backoff_ms", 200),
                                                        ("grpc.max_reconnect_backoff_ms", 1000)])
    try:
        grpc.channel_ready_future(channel).result(timeout=seconds)
    except grpc.FutureTimeoutError:
        raise LabError(f"no chief answered at {r.address} within {seconds:g} s; start the chief first "
                       "(KERASTUNER_TUNER_ID=chief), check KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT, "
                       "or wait longer with --chief-wait.") from None
    finally:
        channel.close()
