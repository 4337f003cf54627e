//! The CLI side of the control protocol: finding and connecting to the daemon's socket,
//! sending requests and reading replies line by line (bounded by [`MAX_LINE`]).

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::{MAX_LINE, Reply, Request, SOCKET};

/// A CLI-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens where the CLI looked.
    #[error(
        "no ptt-node daemon is running at {looked} ({reason}); start one with `ptt-node run --bundle BUNDLE`, or point at the running one with --data DIR or --socket PATH"
    )]
    NotRunning {
        /// The socket paths tried.
        looked: String,
        /// The OS error of the last one.
        reason: String,
    },
    /// The socket exists but this user may not open it.
    #[error(
        "{0}: permission denied; run as the user that runs the daemon, or for the service as root or a member of the ptt-node group"
    )]
    Permission(String),
    /// The connection broke.
    #[error("lost the connection to the daemon: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something unexpected.
    #[error("unexpected reply from the daemon: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
}

/// A connection to a daemon's control socket.
pub struct Client {
    replies: Replies,
    requests: Requests,
}

/// The reading half of a [`Client`] (see [`Client::split`]).
pub struct Replies {
    reader: BufReader<OwnedReadHalf>,
    line: String,
}

impl Replies {
    /// Reads the next reply; `None` when the daemon closed the connection.
    pub async fn next(&mut self) -> Result<Option<Reply>, ClientError> {
        match read_line(&mut self.reader, &mut self.line).await? {
            None => Ok(None),
            Some(l) => serde_json::from_str(l)
                .map(Some)
                .map_err(|e| ClientError::Protocol(format!("{e}: {l}"))),
        }
    }
}

/// The writing half of a [`Client`] (see [`Client::split`]).
pub struct Requests {
    writer: OwnedWriteHalf,
}

impl Requests {
    /// Sends a request.
    pub async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let mut line =
            serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await?;
        Ok(())
    }

    /// Says no more requests follow: the daemon answers those sent, then closes.
    pub async fn finish(&mut self) -> Result<(), ClientError> {
        self.writer.shutdown().await?;
        Ok(())
    }
}

/// The control socket path of a data directory (when the daemon was given no other).
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

impl Client {
    /// Connects to the daemon using `data_dir`.
    pub async fn connect(data_dir: &Path) -> Result<Self, ClientError> {
        Self::connect_socket(&socket_path(data_dir)).await
    }

    /// Connects to the daemon the CLI should talk to: the socket given, else that of the
    /// data directory given, else the first of the default places ([`crate::paths`]) where a
    /// daemon answers.
    pub async fn find(data: Option<&Path>, socket: Option<&Path>) -> Result<Self, ClientError> {
        let candidates = match (socket, data) {
            (Some(s), _) => vec![s.to_path_buf()],
            (None, Some(d)) => vec![socket_path(d)],
            (None, None) => crate::paths::Env::from_process().client_sockets(),
        };
        let mut last = None;
        for path in &candidates {
            match Self::connect_socket(path).await {
                Ok(c) => return Ok(c),
                // Permission denied is an answer: a daemon is there, for another user.
                Err(e @ ClientError::Permission(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(ClientError::NotRunning { reason, .. }) => ClientError::NotRunning {
                looked: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                reason,
            },
            Some(e) => e,
            None => ClientError::Protocol("no socket to try".into()),
        })
    }

    /// Connects to the daemon listening on `path`.
    pub async fn connect_socket(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    ClientError::Permission(path.display().to_string())
                }
                _ => ClientError::NotRunning {
                    looked: path.display().to_string(),
                    reason: e.to_string(),
                },
            })?;
        let (r, w) = stream.into_split();
        Ok(Client {
            replies: Replies {
                reader: BufReader::new(r),
                line: String::new(),
            },
            requests: Requests { writer: w },
        })
    }

    /// Sends a request.
    pub async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        self.requests.send(req).await
    }

    /// Reads the next reply; `None` when the daemon closed the connection.
    pub async fn next(&mut self) -> Result<Option<Reply>, ClientError> {
        self.replies.next().await
    }

    /// The two directions of the connection apart, to pipeline requests: send several, then
    /// read their replies, which come in the order of the requests.
    pub fn split(self) -> (Replies, Requests) {
        (self.replies, self.requests)
    }

    /// Sends a request and reads its one reply; an `error` reply becomes `Err`.
    pub async fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        self.send(req).await?;
        match self.next().await? {
            None => Err(ClientError::Protocol(
                "the daemon closed the connection".into(),
            )),
            Some(Reply::Error { message }) => Err(ClientError::Refused(message)),
            Some(r) => Ok(r),
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at end of stream.
pub async fn read_line<'a, R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &'a mut String,
) -> std::io::Result<Option<&'a str>> {
    buf.clear();
    let mut limited = (&mut *r).take(MAX_LINE as u64 + 1);
    let n = limited.read_line(buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(Some(buf.trim_end_matches(['\n', '\r'])))
}

use tokio::io::AsyncReadExt as _;
