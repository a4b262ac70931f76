//! The control channel between the host and the in-sandbox init: a
//! `SOCK_SEQPACKET` socketpair, one JSON message per packet, stdio pipes passed
//! with `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, bail};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The largest message (a JSON exec request with its argv and env).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Host → init.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToInit {
    /// Start a process; three fds ride along: stdin (read end), stdout and
    /// stderr (write ends).
    Exec { id: u64, argv: Vec<String>, env: Vec<(String, String)>, cwd: Option<String> },
    /// Send `signal` to the process group of exec `id`.
    Signal { id: u64, signal: i32 },
    /// Write a file (parents made as needed, never through a final
    /// symlink) with the bytes read from the one descriptor that rides
    /// along, to its end. Answered with `Written` or `Failed`.
    WriteFile { id: u64, path: String, mode: u32 },
}

/// Init → host.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromInit {
    /// The relay listens; the sandbox is ready for execs.
    Ready,
    Started {
        id: u64,
        pid: i32,
    },
    Failed {
        id: u64,
        error: String,
    },
    Written {
        id: u64,
    },
    Exited {
        id: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// A connected `SOCK_SEQPACKET` pair (both ends close-on-exec).
pub fn seqpacket_pair() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)
        .context("socketpair(AF_UNIX, SOCK_SEQPACKET)")
}

/// One end of the control channel, driven by tokio.
pub struct Channel {
    fd: AsyncFd<OwnedFd>,
}

impl Channel {
    /// `fd` must be a non-blocking seqpacket socket.
    pub fn new(fd: OwnedFd) -> anyhow::Result<Self> {
        set_nonblocking(fd.as_raw_fd())?;
        // SAFETY: `fd` is an owned, open socket and stays owned by the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| e.into_parts().1)
            .context("register control socket with tokio")?;
        Ok(Self { fd })
    }

    pub async fn send<T: Serialize>(&self, msg: &T, fds: &[RawFd]) -> anyhow::Result<()> {
        let body = serde_json::to_vec(msg).context("encode control message")?;
        if body.len() > MAX_MESSAGE {
            bail!("control message too large ({} bytes)", body.len());
        }
        loop {
            let mut guard = self.fd.writable().await.context("control socket")?;
            let res = guard.try_io(|inner| {
                let iov = [IoSlice::new(&body)];
                let cmsgs: Vec<ControlMessage<'_>> =
                    if fds.is_empty() { Vec::new() } else { vec![ControlMessage::ScmRights(fds)] };
                sendmsg::<()>(inner.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
                    .map_err(std::io::Error::from)
            });
            match res {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => return Err(e).context("send control message"),
                Err(_would_block) => continue,
            }
        }
    }

    /// The next message and the fds it carried; `None` at end of stream.
    pub async fn recv<T: for<'de> Deserialize<'de>>(&self) -> anyhow::Result<Option<(T, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let mut guard = self.fd.readable().await.context("control socket")?;
            let res = guard.try_io(|inner| recv_packet(inner.as_fd().as_raw_fd(), &mut buf));
            match res {
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some((n, fds)))) => {
                    let msg = serde_json::from_slice(&buf[..n]).context("decode control message")?;
                    return Ok(Some((msg, fds)));
                }
                Ok(Err(e)) => return Err(e).context("receive control message"),
                Err(_would_block) => continue,
            }
        }
    }
}

fn recv_packet(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for r in raw {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                }
            }
        }
    }
    let n = msg.bytes;
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((n, fds)))
}

fn set_nonblocking(fd: RawFd) -> anyhow::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    // SAFETY: fd is open for the duration of this call (borrowed from an OwnedFd).
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = fcntl(bfd, FcntlArg::F_GETFL).context("fcntl(F_GETFL)")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(bfd, FcntlArg::F_SETFL(flags)).context("fcntl(F_SETFL)")?;
    Ok(())
}
