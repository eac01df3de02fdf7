//! Property: whatever bytes a peer sends, decoding them into a protobuf message and converting
//! that into a domain type either succeeds or returns a `ProtocolError` naming a field — it
//! never panics, and the error it returns stays short (it is logged and sent back as a gRPC
//! status, so it must not echo a megabyte of the peer's input). Whatever the receiver accepts,
//! it also accepts again unchanged after sending it on (conversion is a projection).
//!
//! Inputs: arbitrary bytes; raw field records of any number, wire type and nesting; and valid
//! messages with bytes flipped, inserted, removed, cut off or extra records appended.
//! `PROPTEST_CASES` sets the number of cases per property (default 256; see tests/README.md).

mod common;

use std::fmt::Debug;

use common::{domain, wire};
use dr_proto::convert::ProtocolError;
use dr_proto::domain::{
    AgentMessage, BackupListView, ControllerMessage, HealthReport, Incident, RoleChange, StatusView,
};
use dr_proto::pb;
use proptest::prelude::*;

/// The longest error message a conversion may produce.
const MAX_ERROR_TEXT: usize = 512;

fn bounded(e: &ProtocolError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(
        text.len() <= MAX_ERROR_TEXT,
        "error text is {} bytes: {:.200}...",
        text.len(),
        text
    );
    let status = tonic::Status::from(e.clone());
    prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
    Ok(())
}

/// Decode `bytes` as `P`; if that works, convert to `D`; if that works, send it on and receive it
/// again.
fn check<P, D>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    P: prost::Message + Default + From<D>,
    D: TryFrom<P, Error = ProtocolError> + Clone + PartialEq + Debug,
{
    let Ok(wire) = P::decode(bytes) else {
        return Ok(());
    };
    match D::try_from(wire) {
        Ok(value) => {
            let again = D::try_from(P::from(value.clone()));
            prop_assert_eq!(again, Ok(value));
        }
        Err(e) => bounded(&e)?,
    }
    Ok(())
}

/// Every receiving conversion of the protocol.
fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    check::<pb::AgentMessage, AgentMessage>(bytes)?;
    check::<pb::ControllerMessage, ControllerMessage>(bytes)?;
    check::<pb::HealthReport, HealthReport>(bytes)?;
    check::<pb::StatusResponse, StatusView>(bytes)?;
    check::<pb::Incident, Incident>(bytes)?;
    check::<pb::RoleChange, RoleChange>(bytes)?;
    // Display-only views copy without validating; they must not panic either.
    if let Ok(list) = <pb::BackupListResponse as prost::Message>::decode(bytes) {
        let view = BackupListView::from_wire("g", &list);
        prop_assert_eq!(view.backups.len(), list.entries.len());
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_all(&bytes)?;
    }

    #[test]
    fn arbitrary_field_records(fields in wire::fields()) {
        check_all(&wire::encode(&fields))?;
    }

    #[test]
    fn mutated_agent_messages(m in domain::agent_message(), mutations in wire::mutations()) {
        let bytes = prost::Message::encode_to_vec(&pb::AgentMessage::from(m));
        check_all(&wire::apply(bytes, &mutations))?;
    }

    #[test]
    fn mutated_controller_messages(
        m in domain::controller_message(),
        mutations in wire::mutations(),
    ) {
        let bytes = prost::Message::encode_to_vec(&pb::ControllerMessage::from(m));
        check_all(&wire::apply(bytes, &mutations))?;
    }

    #[test]
    fn mutated_status_views(v in domain::status_view(), mutations in wire::mutations()) {
        let bytes = prost::Message::encode_to_vec(&pb::StatusResponse::from(v));
        check_all(&wire::apply(bytes, &mutations))?;
    }

    #[test]
    fn mutated_incidents(
        i in domain::incident(),
        c in domain::role_change(),
        mutations in wire::mutations(),
    ) {
        let bytes = prost::Message::encode_to_vec(&pb::Incident::from(i));
        check_all(&wire::apply(bytes, &mutations))?;
        let bytes = prost::Message::encode_to_vec(&pb::RoleChange::from(c));
        check_all(&wire::apply(bytes, &mutations))?;
    }
}
