//! MQTT 3.1.1 and 5 framing on rumqttc's packet codecs, folded into one small set of
//! packets the server handles (what the server needs of each; v5 properties other than
//! topic aliases are ignored).

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use rumqttc::QoS;

/// The protocol a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

/// A packet from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum In {
    Connect {
        client_id: String,
        keep_alive: u16,
        clean: bool,
        username: Option<String>,
        password: Option<String>,
    },
    Publish {
        topic: String,
        /// MQTT 5 topic alias (the topic may be empty when it is set).
        alias: Option<u16>,
        payload: Bytes,
        qos: QoS,
        pkid: u16,
        retain: bool,
    },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(String, QoS)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
    /// A packet a server does not expect (CONNACK, SUBACK, AUTH...).
    Unexpected(&'static str),
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadCredentials,
    NotAuthorized,
    BadClientId,
    ServerBusy,
}

/// A packet to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    ConnAck(Result<(), Refusal>),
    Publish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        pkid: u16,
        retain: bool,
    },
    /// PUBACK; `false` refuses it (v5 reason "not authorized"; v4 has no refusal, the
    /// connection is closed instead, by the caller).
    PubAck(u16, bool),
    PubRec(u16, bool),
    PubRel(u16),
    PubComp(u16),
    /// SUBACK with one granted QoS or refusal per filter.
    SubAck(u16, Vec<Option<QoS>>),
    UnsubAck(u16, usize),
    PingResp,
}

/// Framing failure.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("the packet is larger than {0} bytes")]
    TooLarge(usize),
}

/// Reads the protocol level of a CONNECT at the start of `buf`: `Ok(None)` when more
/// bytes are needed.
pub fn sniff_version(buf: &[u8]) -> Result<Option<Version>, CodecError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != 0x10 {
        return Err(CodecError::Malformed(
            "the first packet must be CONNECT".into(),
        ));
    }
    // Remaining length: 1 to 4 bytes.
    let mut i = 1;
    loop {
        let Some(b) = buf.get(i) else {
            return Ok(None);
        };
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(CodecError::Malformed("bad remaining length".into()));
        }
    }
    // Protocol name (length-prefixed "MQTT"), then the level.
    let Some(level) = buf.get(i + 6) else {
        return Ok(None);
    };
    if buf.get(i..i + 6) != Some(&[0, 4, b'M', b'Q', b'T', b'T'][..]) {
        return Err(CodecError::Malformed(
            "not MQTT 3.1.1 or 5 (protocol name)".into(),
        ));
    }
    match level {
        4 => Ok(Some(Version::V4)),
        5 => Ok(Some(Version::V5)),
        l => Err(CodecError::Malformed(format!(
            "protocol level {l} is not supported (3.1.1 = 4, 5 = 5)"
        ))),
    }
}

fn q(qos: QoS) -> QoS {
    qos
}

/// Reads one packet from `buf` (consuming it): `Ok(None)` when more bytes are needed.
pub fn read(v: Version, buf: &mut BytesMut, max: usize) -> Result<Option<In>, CodecError> {
    match v {
        Version::V4 => match v4::Packet::read(buf, max) {
            Ok(p) => Ok(Some(from_v4(p))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)) => {
                Err(CodecError::TooLarge(max))
            }
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        },
        Version::V5 => {
            // A v5 DISCONNECT may have no body, which the codec refuses: handle it here.
            if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
                let _ = buf.split_to(2);
                return Ok(Some(In::Disconnect));
            }
            match v5::Packet::read(buf, Some(max as u32)) {
                Ok(p) => Ok(Some(from_v5(p))),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                Err(rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. }) => {
                    Err(CodecError::TooLarge(max))
                }
                Err(e) => Err(CodecError::Malformed(e.to_string())),
            }
        }
    }
}

fn from_v4(p: v4::Packet) -> In {
    match p {
        v4::Packet::Connect(c) => In::Connect {
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_session,
            username: c.login.as_ref().map(|l| l.username.clone()),
            password: c.login.map(|l| l.password),
        },
        v4::Packet::Publish(p) => In::Publish {
            topic: p.topic,
            alias: None,
            payload: p.payload,
            qos: q(p.qos),
            pkid: p.pkid,
            retain: p.retain,
        },
        v4::Packet::PubAck(a) => In::PubAck(a.pkid),
        v4::Packet::PubRec(a) => In::PubRec(a.pkid),
        v4::Packet::PubRel(a) => In::PubRel(a.pkid),
        v4::Packet::PubComp(a) => In::PubComp(a.pkid),
        v4::Packet::Subscribe(s) => In::Subscribe {
            pkid: s.pkid,
            filters: s.filters.into_iter().map(|f| (f.path, f.qos)).collect(),
        },
        v4::Packet::Unsubscribe(u) => In::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => In::PingReq,
        v4::Packet::Disconnect => In::Disconnect,
        v4::Packet::ConnAck(_) => In::Unexpected("CONNACK"),
        v4::Packet::SubAck(_) => In::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => In::Unexpected("PINGRESP"),
    }
}

fn from_v5(p: v5::Packet) -> In {
    match p {
        v5::Packet::Connect(c, _, login) => In::Connect {
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_start,
            username: login.as_ref().map(|l| l.username.clone()),
            password: login.map(|l| l.password),
        },
        v5::Packet::Publish(p) => In::Publish {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            alias: p.properties.as_ref().and_then(|pr| pr.topic_alias),
            payload: p.payload,
            qos: p.qos.into_v4(),
            pkid: p.pkid,
            retain: p.retain,
        },
        v5::Packet::PubAck(a) => In::PubAck(a.pkid),
        v5::Packet::PubRec(a) => In::PubRec(a.pkid),
        v5::Packet::PubRel(a) => In::PubRel(a.pkid),
        v5::Packet::PubComp(a) => In::PubComp(a.pkid),
        v5::Packet::Subscribe(s) => In::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos.into_v4()))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => In::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => In::PingReq,
        v5::Packet::Disconnect(_) => In::Disconnect,
        v5::Packet::Auth(_) => In::Unexpected("AUTH"),
        v5::Packet::ConnAck(_) => In::Unexpected("CONNACK"),
        v5::Packet::SubAck(_) => In::Unexpected("SUBACK"),
        v5::Packet::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        v5::Packet::PingResp(_) => In::Unexpected("PINGRESP"),
    }
}

/// The two crates' QoS enums are distinct types with the same meaning.
trait IntoV4 {
    fn into_v4(self) -> QoS;
}

impl IntoV4 for rumqttc::v5::mqttbytes::QoS {
    fn into_v4(self) -> QoS {
        match self {
            rumqttc::v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
            rumqttc::v5::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
        }
    }
}

fn to_v5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Encodes `out` onto `buf`.
pub fn write(v: Version, out: Out, buf: &mut BytesMut) -> Result<(), CodecError> {
    let res = match v {
        Version::V4 => v4_packet(out)
            .write(buf, usize::MAX)
            .map_err(|e| CodecError::Malformed(e.to_string())),
        Version::V5 => v5_packet(out)
            .write(buf, None)
            .map_err(|e| CodecError::Malformed(e.to_string())),
    };
    res.map(|_| ())
}

fn v4_packet(out: Out) -> v4::Packet {
    use v4::*;
    match out {
        Out::ConnAck(r) => Packet::ConnAck(ConnAck::new(
            match r {
                Ok(()) => ConnectReturnCode::Success,
                Err(Refusal::BadCredentials) => ConnectReturnCode::BadUserNamePassword,
                Err(Refusal::NotAuthorized) => ConnectReturnCode::NotAuthorized,
                Err(Refusal::BadClientId) => ConnectReturnCode::BadClientId,
                Err(Refusal::ServerBusy) => ConnectReturnCode::ServiceUnavailable,
            },
            false,
        )),
        Out::Publish {
            topic,
            payload,
            qos,
            pkid,
            retain,
        } => {
            let mut p = Publish::from_bytes(topic, qos, payload);
            p.pkid = pkid;
            p.retain = retain;
            Packet::Publish(p)
        }
        Out::PubAck(pkid, _) => Packet::PubAck(PubAck::new(pkid)),
        Out::PubRec(pkid, _) => Packet::PubRec(PubRec::new(pkid)),
        Out::PubRel(pkid) => Packet::PubRel(PubRel::new(pkid)),
        Out::PubComp(pkid) => Packet::PubComp(PubComp::new(pkid)),
        Out::SubAck(pkid, codes) => Packet::SubAck(SubAck::new(
            pkid,
            codes
                .into_iter()
                .map(|c| match c {
                    Some(q) => SubscribeReasonCode::Success(q),
                    None => SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Out::UnsubAck(pkid, _) => Packet::UnsubAck(UnsubAck::new(pkid)),
        Out::PingResp => Packet::PingResp,
    }
}

fn v5_packet(out: Out) -> v5::Packet {
    use v5::*;
    match out {
        Out::ConnAck(r) => Packet::ConnAck(ConnAck {
            session_present: false,
            code: match r {
                Ok(()) => ConnectReturnCode::Success,
                Err(Refusal::BadCredentials) => ConnectReturnCode::BadUserNamePassword,
                Err(Refusal::NotAuthorized) => ConnectReturnCode::NotAuthorized,
                Err(Refusal::BadClientId) => ConnectReturnCode::ClientIdentifierNotValid,
                Err(Refusal::ServerBusy) => ConnectReturnCode::ServerBusy,
            },
            properties: None,
        }),
        Out::Publish {
            topic,
            payload,
            qos,
            pkid,
            retain,
        } => {
            let mut p = Publish::new(topic, to_v5(qos), payload, None);
            p.pkid = pkid;
            p.retain = retain;
            Packet::Publish(p)
        }
        Out::PubAck(pkid, ok) => {
            let mut a = PubAck::new(pkid, None);
            if !ok {
                a.reason = PubAckReason::NotAuthorized;
            }
            Packet::PubAck(a)
        }
        Out::PubRec(pkid, ok) => {
            let mut a = PubRec::new(pkid, None);
            if !ok {
                a.reason = PubRecReason::NotAuthorized;
            }
            Packet::PubRec(a)
        }
        Out::PubRel(pkid) => Packet::PubRel(PubRel::new(pkid, None)),
        Out::PubComp(pkid) => Packet::PubComp(PubComp::new(pkid, None)),
        Out::SubAck(pkid, codes) => Packet::SubAck(SubAck {
            pkid,
            return_codes: codes
                .into_iter()
                .map(|c| match c {
                    Some(q) => SubscribeReasonCode::Success(to_v5(q)),
                    None => SubscribeReasonCode::NotAuthorized,
                })
                .collect(),
            properties: None,
        }),
        Out::UnsubAck(pkid, n) => Packet::UnsubAck(UnsubAck {
            pkid,
            reasons: vec![UnsubAckReason::Success; n],
            properties: None,
        }),
        Out::PingResp => Packet::PingResp(PingResp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_versions() {
        let mut b = BytesMut::new();
        v4::Packet::Connect(v4::Connect::new("c"))
            .write(&mut b, 1024)
            .unwrap();
        assert_eq!(sniff_version(&b).unwrap(), Some(Version::V4));
        assert_eq!(sniff_version(&b[..3]).unwrap(), None);
        assert!(sniff_version(b"\x30\x00").is_err());
        let mut bad = b.to_vec();
        bad[8] = 3;
        assert!(sniff_version(&bad).is_err());
        let mut b5 = BytesMut::new();
        v5::Packet::Connect(
            v5::Connect {
                keep_alive: 10,
                client_id: "c".into(),
                clean_start: true,
                properties: None,
            },
            None,
            Some(v5::Login::new("u", "p")),
        )
        .write(&mut b5, None)
        .unwrap();
        assert_eq!(sniff_version(&b5).unwrap(), Some(Version::V5));
        let got = read(Version::V5, &mut b5, 1024).unwrap().unwrap();
        assert_eq!(
            got,
            In::Connect {
                client_id: "c".into(),
                keep_alive: 10,
                clean: true,
                username: Some("u".into()),
                password: Some("p".into())
            }
        );
    }

    #[test]
    fn partial_and_oversized_packets() {
        let mut b = BytesMut::new();
        let mut p = v4::Publish::new("t", QoS::AtLeastOnce, vec![1u8; 100]);
        p.pkid = 7;
        v4::Packet::Publish(p).write(&mut b, 1024).unwrap();
        let whole = b.clone();
        let mut part = BytesMut::from(&whole[..10]);
        assert!(read(Version::V4, &mut part, 1024).unwrap().is_none());
        let mut big = whole.clone();
        assert!(matches!(
            read(Version::V4, &mut big, 50),
            Err(CodecError::TooLarge(50))
        ));
        let mut ok = whole;
        assert!(matches!(
            read(Version::V4, &mut ok, 1024).unwrap(),
            Some(In::Publish { .. })
        ));
        let mut d = BytesMut::from(&[0xE0u8, 0][..]);
        assert_eq!(read(Version::V5, &mut d, 10).unwrap(), Some(In::Disconnect));
    }
}
