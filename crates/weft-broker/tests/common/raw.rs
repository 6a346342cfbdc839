//! A raw protocol client for wire-level tests (malformed frames, exact versions).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::TestBroker;

/// A raw Kafka-protocol client over a plain socket: frames requests with kafka-protocol and
/// lets tests send malformed bytes too.
pub(crate) struct Raw {
    pub(crate) s: TcpStream,
    pub(crate) correlation: i32,
}

impl Raw {
    pub(crate) fn connect(b: &TestBroker) -> Raw {
        let s = TcpStream::connect(b.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Raw { s, correlation: 0 }
    }

    /// Sends `bytes`; false when the broker already closed the connection.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    pub(crate) fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    pub(crate) fn frame<R: Request>(&mut self, version: i16, req: &R) -> Vec<u8> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("header");
        req.encode(&mut body, version).expect("body");
        let mut out = Vec::with_capacity(body.len() + 4);
        out.put_i32(body.len() as i32);
        out.extend_from_slice(&body);
        out
    }

    pub(crate) fn decode<R: Request>(&self, version: i16, mut resp: Bytes) -> R::Response {
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let h = kafka_protocol::messages::ResponseHeader::decode(&mut resp, header_version)
            .expect("response header");
        assert_eq!(h.correlation_id, self.correlation);
        R::Response::decode(&mut resp, version).expect("response body")
    }

    pub(crate) fn request<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let frame = self.frame(version, req);
        assert!(self.send_raw(&frame), "send");
        let resp = self.read_frame().expect("response");
        self.decode::<R>(version, resp)
    }

    pub(crate) fn assert_closed(&mut self, what: &str) {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{what}: expected the connection to be closed, got {other:?}"),
        }
    }
}

/// The broker still answers a Metadata request on this connection.
pub(crate) fn healthy(c: &mut Raw) {
    let r: MetadataResponse = c.request(12, &MetadataRequest::default().with_topics(None));
    assert_eq!(r.brokers.len(), 1);
}

/// A CreateTopics entry: one partition, replication factor 1, `configs` as given.
pub(crate) fn creatable(name: &str, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string((*k).to_owned()))
                        .with_value(Some(StrBytes::from_string((*v).to_owned())))
                })
                .collect(),
        )
}
