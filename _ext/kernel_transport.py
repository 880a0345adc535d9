"""Encrypt the connection to the kernels that execute the chapters.

ipykernel 7 logs "Kernel is running over TCP without encryption ..." for every kernel started
without CurveZMQ keys: one warning per chapter in the build log. jupyter_client (8.10 here)
can give a kernel such keys itself when the kernelspec declares ``supported_encryption: curve``
(ipykernel's does) and pyzmq has CurveZMQ: ``KernelManager.transport_encryption = "auto"``. But
myst-nb runs notebooks through jupyter-cache and nbclient, which create the kernel manager with
no configuration, so there is no setting to pass; this sets the default of that option for the
kernel managers of this build process (the kernels run on localhost either way, so nothing else
changes, and a kernel that does not declare support is started as before).
"""

from __future__ import annotations

from typing import Any


def encrypt_kernel_transport() -> bool:
    """Make ``KernelManager.transport_encryption`` default to "auto"; True if it could."""
    try:
        import zmq
        from jupyter_client.manager import KernelManager
    except ImportError:
        return False
    trait = KernelManager.class_traits().get("transport_encryption")
    if trait is None or not zmq.has("curve"):
        return False
    trait.default_value = "auto"
    return True


def setup(app: Any) -> dict[str, Any]:
    encrypt_kernel_transport()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
