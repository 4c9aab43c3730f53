//! The blocking TraCI client. The twin drives the simulator from one thread, step by
//! step; a blocking socket with Nagle off is the fastest way to do that (one round
//! trip per step, with every subscription result riding on the step's answer).

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::codec::{self, CodecError, Content, Reader, SubscriptionResult, Value, Writer};
use super::ids;

#[derive(Debug, thiserror::Error)]
pub enum TraciError {
    #[error("TraCI connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("TraCI message from SUMO: {0}")]
    Codec(#[from] CodecError),
    #[error("SUMO refused command 0x{command:02x}: {message}")]
    Refused { command: u8, message: String },
    #[error("unexpected TraCI answer: {0}")]
    Unexpected(String),
    #[error("could not connect to SUMO at {addr} within {waited:?}: {source}")]
    Connect {
        addr: SocketAddr,
        waited: Duration,
        source: std::io::Error,
    },
}

pub struct Traci {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    buf: Vec<u8>,
}

/// The longest wait for one answer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// One command of a batch: its id and content.
pub type Command = (u8, Content);

impl Traci {
    /// Connects, retrying until SUMO listens (it opens the port after loading the
    /// network, which takes from milliseconds to minutes) or `patience` runs out.
    pub fn connect(addr: SocketAddr, patience: Duration) -> Result<Traci, TraciError> {
        let start = Instant::now();
        let stream = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < patience => {
                    tracing::trace!(error = %e, "SUMO not listening yet");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(TraciError::Connect {
                        addr,
                        waited: start.elapsed(),
                        source,
                    })
                }
            }
        };
        stream.set_nodelay(true)?;
        // A simulator that stops answering (hung, or a peer that is not SUMO) must not
        // hang the caller: no step of a city network takes this long.
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let reader = BufReader::with_capacity(1 << 16, stream.try_clone()?);
        Ok(Traci {
            reader,
            writer: BufWriter::new(stream),
            buf: Vec::new(),
        })
    }

    /// Sends commands as one message and returns the raw answer.
    fn exchange(&mut self, commands: &[Command]) -> Result<&[u8], TraciError> {
        let mut w = Writer::new();
        for (id, content) in commands {
            w.command(*id, content);
        }
        self.writer.write_all(&w.finish())?;
        self.writer.flush()?;
        let mut len = [0u8; 4];
        self.reader.read_exact(&mut len)?;
        let total = i32::from_be_bytes(len);
        let body = usize::try_from(total)
            .ok()
            .and_then(|t| t.checked_sub(4))
            .filter(|b| *b <= codec::MAX_MESSAGE)
            .ok_or(CodecError::BadLength(i64::from(total)))?;
        self.buf.resize(body, 0);
        self.reader.read_exact(&mut self.buf)?;
        Ok(&self.buf)
    }

    fn check(status: codec::Status, expected: u8) -> Result<(), TraciError> {
        if status.result != codec::RTYPE_OK {
            return Err(TraciError::Refused {
                command: status.command,
                message: status.description,
            });
        }
        if status.command != expected {
            return Err(TraciError::Unexpected(format!(
                "status for command 0x{:02x}, expected 0x{expected:02x}",
                status.command
            )));
        }
        Ok(())
    }

    /// The API version and SUMO's identification string.
    pub fn version(&mut self) -> Result<(i32, String), TraciError> {
        let body = self.exchange(&[(ids::CMD_GETVERSION, Content::new())])?;
        let mut r = Reader::new(body);
        Self::check(codec::status(&mut r)?, ids::CMD_GETVERSION)?;
        let (_, mut c) = r.command()?;
        Ok((c.i32()?, c.string()?))
    }

    /// Advances the simulation by one step (`target` 0) or to `target` seconds, and
    /// returns the subscription results of that step.
    pub fn step(&mut self, target: f64) -> Result<Vec<SubscriptionResult>, TraciError> {
        let body = self.exchange(&[(ids::CMD_SIMSTEP, Content::new().f64(target))])?;
        let mut r = Reader::new(body);
        Self::check(codec::status(&mut r)?, ids::CMD_SIMSTEP)?;
        Ok(codec::step_results(&mut r)?)
    }

    /// Reads one variable of one object.
    pub fn get(&mut self, domain: u8, var: u8, object: &str) -> Result<Value, TraciError> {
        self.get_with(domain, var, object, None)
    }

    /// Reads one variable that takes a parameter (a typed value after the object id).
    pub fn get_with(
        &mut self,
        domain: u8,
        var: u8,
        object: &str,
        param: Option<&Value>,
    ) -> Result<Value, TraciError> {
        let mut content = Content::new().u8(var).string(object);
        if let Some(p) = param {
            content = content.value(p);
        }
        let body = self.exchange(&[(domain, content)])?;
        let mut r = Reader::new(body);
        Self::answer(&mut r, domain, var, object)
    }

    /// One get command's answer: its status, then the value of `var` of `object`.
    fn answer(r: &mut Reader<'_>, domain: u8, var: u8, object: &str) -> Result<Value, TraciError> {
        Self::check(codec::status(r)?, domain)?;
        let (_, got_var, got_object, value) = codec::get_result(r)?;
        if got_var != var || got_object != object {
            return Err(TraciError::Unexpected(format!(
                "answer for 0x{got_var:02x} of {got_object:?}, asked 0x{var:02x} of {object:?}"
            )));
        }
        Ok(value)
    }

    /// Reads one variable of many objects, in one message per 512 of them.
    pub fn get_many(
        &mut self,
        domain: u8,
        var: u8,
        objects: &[String],
    ) -> Result<Vec<Value>, TraciError> {
        let mut out = Vec::with_capacity(objects.len());
        for chunk in objects.chunks(512) {
            let commands: Vec<Command> = chunk
                .iter()
                .map(|o| (domain, Content::new().u8(var).string(o)))
                .collect();
            let body = self.exchange(&commands)?;
            let mut r = Reader::new(body);
            for object in chunk {
                out.push(Self::answer(&mut r, domain, var, object)?);
            }
        }
        Ok(out)
    }

    /// Sets variables, all in one message (one round trip for every signal of a step).
    pub fn set_many(&mut self, sets: &[(u8, u8, &str, Value)]) -> Result<(), TraciError> {
        if sets.is_empty() {
            return Ok(());
        }
        let commands: Vec<Command> = sets
            .iter()
            .map(|(domain, var, object, value)| {
                (*domain, Content::new().u8(*var).string(object).value(value))
            })
            .collect();
        let body = self.exchange(&commands)?;
        let mut r = Reader::new(body);
        for (domain, ..) in sets {
            Self::check(codec::status(&mut r)?, *domain)?;
        }
        Ok(())
    }

    /// Sets one variable.
    pub fn set(
        &mut self,
        domain: u8,
        var: u8,
        object: &str,
        value: Value,
    ) -> Result<(), TraciError> {
        self.set_many(&[(domain, var, object, value)])
    }

    /// Subscribes to variables of objects for the whole run; their values then come
    /// with every step's answer. Many objects go in one message.
    pub fn subscribe_many(
        &mut self,
        domain: u8,
        objects: &[String],
        vars: &[u8],
    ) -> Result<Vec<SubscriptionResult>, TraciError> {
        let mut out = Vec::with_capacity(objects.len());
        // SUMO answers each subscription with its status and first result; batches keep
        // a message far below any limit.
        for chunk in objects.chunks(512) {
            let commands: Vec<Command> = chunk
                .iter()
                .map(|object| {
                    let mut c = Content::new()
                        .f64(ids::ALWAYS)
                        .f64(ids::ALWAYS)
                        .string(object)
                        .u8(vars.len() as u8);
                    for v in vars {
                        c = c.u8(*v);
                    }
                    (domain, c)
                })
                .collect();
            let body = self.exchange(&commands)?;
            let mut r = Reader::new(body);
            for _ in chunk {
                Self::check(codec::status(&mut r)?, domain)?;
                if !vars.is_empty() {
                    out.push(codec::subscription_result(&mut r)?);
                }
            }
        }
        Ok(out)
    }

    /// Ends the session; SUMO writes its outputs and exits.
    pub fn close(mut self) -> Result<(), TraciError> {
        let body = self.exchange(&[(ids::CMD_CLOSE, Content::new())])?;
        let mut r = Reader::new(body);
        Self::check(codec::status(&mut r)?, ids::CMD_CLOSE)
    }
}
