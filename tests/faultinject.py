"""Write-fault injection below Python: an LD_PRELOAD shim over write/pwrite/writev.

The shim makes the C library's write calls fail with a chosen errno for files
whose path contains a pattern, after skipping a number of matching writes. It
sits under everything that writes (Python's os.write, HDF5's pwrite), so it
also catches a write path that bypasses flowprep's checked writes, and it is
inherited by the spawn workers through the environment:

    FLOWPREP_FAULT="<errno>:<skip>:<count>:<pattern>"   fail <count> writes after <skip>
    FLOWPREP_FAULT_ONCE=<path>                           only the first process to fail
                                                         creates <path> and fails; the
                                                         others never do (a one-shot fault
                                                         across all processes)

Needs a C compiler (gcc or cc); ``build_shim`` returns None without one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, Optional

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/uio.h>

static int armed = -1, err_no;
static long skip_n, count_n;
static char match[512];

static void init(void) {
    if (armed >= 0) return;
    const char *s = getenv("FLOWPREP_FAULT");
    armed = (s && sscanf(s, "%d:%ld:%ld:%511s", &err_no, &skip_n, &count_n, match) == 4) ? 1 : 0;
}

static int should_fail(int fd) {
    char link[64], path[4096];
    ssize_t n;
    int saved = errno;
    init();
    if (armed != 1 || count_n <= 0) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) { errno = saved; return 0; }
    path[n] = 0;
    if (!strstr(path, match)) { errno = saved; return 0; }
    if (skip_n > 0) { skip_n--; errno = saved; return 0; }
    const char *once = getenv("FLOWPREP_FAULT_ONCE");
    if (once && *once) {
        int m = open(once, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (m < 0) { count_n = 0; errno = saved; return 0; }
        close(m);
    }
    count_n--;
    return 1;
}

#define REAL(name, ret, ...) static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t len) {
    REAL(write, ssize_t, int, const void *, size_t);
    if (should_fail(fd)) { errno = err_no; return -1; }
    return real_write(fd, buf, len);
}
ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
    REAL(pwrite, ssize_t, int, const void *, size_t, off_t);
    if (should_fail(fd)) { errno = err_no; return -1; }
    return real_pwrite(fd, buf, len, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) {
    REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
    if (should_fail(fd)) { errno = err_no; return -1; }
    return real_pwrite64(fd, buf, len, off);
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev, ssize_t, int, const struct iovec *, int);
    if (should_fail(fd)) { errno = err_no; return -1; }
    return real_writev(fd, iov, cnt);
}
"""


def build_shim(directory: str) -> Optional[str]:
    """Compile the shim into ``directory``; its path, or None when no C compiler works."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    os.makedirs(directory, exist_ok=True)
    src = os.path.join(directory, "fault.c")
    lib = os.path.join(directory, "fault.so")
    with open(src, "w") as fh:
        fh.write(SHIM_C)
    p = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", lib, src, "-ldl"],
                       capture_output=True, text=True)
    return lib if p.returncode == 0 else None


def fault_env(shim: str, errno_: int, pattern: str, skip: int = 0, count: int = 1,
              once: Optional[str] = None) -> Dict[str, str]:
    """Environment variables that arm the shim (merge into os.environ for a subprocess)."""
    env = {"LD_PRELOAD": shim, "FLOWPREP_FAULT": f"{errno_}:{skip}:{count}:{pattern}"}
    if once:
        env["FLOWPREP_FAULT_ONCE"] = once
    return env


def mount_tmpfs(path: str, size: str) -> bool:
    """Mount a size-limited tmpfs at ``path`` (root only); True when it worked."""
    os.makedirs(path, exist_ok=True)
    try:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


def resize_tmpfs(path: str, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", path], check=True, capture_output=True)


def unmount(path: str) -> None:
    subprocess.run(["umount", "-l", path], capture_output=True)
