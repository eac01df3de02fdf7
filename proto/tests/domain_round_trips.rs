//! Property: every valid domain value crosses the wire unchanged — domain → protobuf → bytes →
//! protobuf → domain gives back the value that was sent. A value the sender may build but the
//! receiver refuses would be a message that can never be delivered.
//! `PROPTEST_CASES` sets the number of cases per property (default 256; see tests/README.md).

mod common;

use std::fmt::Debug;

use common::domain;
use dr_proto::convert::ProtocolError;
use dr_proto::pb;
use proptest::prelude::*;

fn round_trip<P, D>(value: D) -> Result<(), TestCaseError>
where
    P: prost::Message + Default + From<D>,
    D: TryFrom<P, Error = ProtocolError> + Clone + PartialEq + Debug,
{
    let bytes = P::from(value.clone()).encode_to_vec();
    let wire = P::decode(bytes.as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(D::try_from(wire), Ok(value));
    Ok(())
}

proptest! {
    #[test]
    fn agent_messages(m in domain::agent_message()) {
        round_trip::<pb::AgentMessage, _>(m)?;
    }

    #[test]
    fn controller_messages(m in domain::controller_message()) {
        round_trip::<pb::ControllerMessage, _>(m)?;
    }

    #[test]
    fn health_reports(r in domain::report()) {
        round_trip::<pb::HealthReport, _>(r)?;
    }

    #[test]
    fn status_views(v in domain::status_view()) {
        round_trip::<pb::StatusResponse, _>(v)?;
    }

    #[test]
    fn incidents_and_role_changes(i in domain::incident(), c in domain::role_change()) {
        round_trip::<pb::Incident, _>(i)?;
        round_trip::<pb::RoleChange, _>(c)?;
    }
}
