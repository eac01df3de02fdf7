//! Valid domain values, as the sending side builds them: names that pass validation, text within
//! the wire limits, finite non-negative measurements, ports and status codes in range. Everything
//! these produce must cross the wire and come back unchanged.

use dr_proto::domain::*;
use proptest::option;
use proptest::prelude::*;

pub fn host() -> impl Strategy<Value = HostName> {
    "[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}".prop_map(|s| HostName::new(s).expect("valid by construction"))
}

pub fn group() -> impl Strategy<Value = GroupName> {
    "[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}"
        .prop_map(|s| GroupName::new(s).expect("valid by construction"))
}

/// Any characters (control characters, emoji) up to `max_chars`, so at most 4 × that in bytes.
pub fn text(max_chars: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max_chars).prop_map(String::from_iter)
}

/// Identifiers and versions: the wire allows 128 bytes.
fn short_text() -> impl Strategy<Value = String> {
    text(32)
}

/// Details and reasons: the wire allows 4096 bytes.
fn detail() -> impl Strategy<Value = String> {
    prop_oneof![4 => text(40), 1 => Just("d".repeat(4096))]
}

fn epoch() -> impl Strategy<Value = Epoch> {
    any::<u64>().prop_map(Epoch)
}

/// Finite and not negative (what probes measure).
pub fn measure() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        4 => POSITIVE | NORMAL | SUBNORMAL | ZERO,
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(f64::MAX),
    ]
}

fn backup_id() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("full"), Just("incremental")],
        2000u32..2100,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(kind, y, mo, d, h, mi, s)| {
            format!("{kind}-{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
        })
}

pub fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Primary),
        Just(Role::Replica),
        Just(Role::Fenced),
        Just(Role::Unknown)
    ]
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Green),
        Just(Health::Yellow),
        Just(Health::Red),
        Just(Health::Unknown)
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Automatic), Just(Mode::Paused)]
}

pub fn hello() -> BoxedStrategy<Hello> {
    (
        any::<u32>(),
        host(),
        group(),
        short_text(),
        proptest::collection::vec(short_text(), 0..=64),
        epoch(),
        any::<i32>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                protocol_version,
                host,
                group,
                agent_version,
                capabilities,
                last_epoch_seen,
                priority,
                no_failover,
            )| Hello {
                protocol_version,
                host,
                group,
                agent_version,
                capabilities,
                last_epoch_seen,
                priority,
                no_failover,
            },
        )
        .boxed()
}

pub fn welcome() -> impl Strategy<Value = Welcome> {
    (short_text(), epoch(), role(), option::of(host())).prop_map(
        |(controller_id, epoch, role, primary)| Welcome {
            controller_id,
            epoch,
            role,
            primary,
        },
    )
}

pub fn ack() -> impl Strategy<Value = ReportAck> {
    (any::<u64>(), epoch(), role(), option::of(host())).prop_map(|(seq, epoch, role, primary)| {
        ReportAck {
            seq,
            epoch,
            role,
            primary,
        }
    })
}

pub fn lease_grant() -> impl Strategy<Value = LeaseGrant> {
    (
        any::<u64>(),
        epoch(),
        prop_oneof![(1u32..).prop_map(Ok), detail().prop_map(Err)],
    )
        .prop_map(|(request_id, epoch, outcome)| LeaseGrant {
            request_id,
            epoch,
            outcome,
        })
}

fn action() -> impl Strategy<Value = Action> {
    let id = || option::of(backup_id());
    prop_oneof![
        detail().prop_map(|note| Action::Ping { note }),
        detail().prop_map(|reason| Action::Restart { reason }),
        option::of(host()).prop_map(|old_primary| Action::Promote { old_primary }),
        (option::of(host()), detail()).prop_map(|(new_primary, reason)| Action::Demote {
            new_primary,
            reason
        }),
        (any::<u32>(), detail(), any::<bool>()).prop_map(|(lines, grep, follow)| {
            Action::ReadLogs {
                lines,
                grep,
                follow,
            }
        }),
        any::<u32>().prop_map(|log_mib| Action::Diagnostics { log_mib }),
        any::<bool>().prop_map(|incremental| Action::Backup { incremental }),
        (id(), option::of(host())).prop_map(|(backup_id, from_host)| Action::Restore {
            backup_id,
            from_host
        }),
        (id(), any::<bool>(), option::of(host())).prop_map(|(backup_id, deep, from_host)| {
            Action::VerifyBackup {
                backup_id,
                deep,
                from_host,
            }
        }),
        (id(), option::of(host())).prop_map(|(backup_id, from_host)| Action::Drill {
            backup_id,
            from_host
        }),
        Just(Action::ListBackups),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(keep_last, keep_daily, keep_weekly)| Action::ApplyRetention {
                keep_last,
                keep_daily,
                keep_weekly
            }
        ),
    ]
}

pub fn command() -> BoxedStrategy<Command> {
    (
        proptest::collection::vec(any::<char>(), 1..=32).prop_map(String::from_iter),
        epoch(),
        action(),
    )
        .prop_map(|(id, epoch, action)| Command { id, epoch, action })
        .boxed()
}

pub fn command_update() -> BoxedStrategy<CommandUpdate> {
    let update = prop_oneof![
        (detail(), any::<u64>(), any::<u64>()).prop_map(|(message, done, total)| {
            UpdateKind::Progress {
                message,
                done,
                total,
            }
        }),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            Just(vec![7u8; 256 * 1024])
        ]
        .prop_map(UpdateKind::Chunk),
        prop_oneof![detail().prop_map(Ok), detail().prop_map(Err)]
            .prop_map(|outcome| UpdateKind::Result(CommandResult { outcome })),
    ];
    (short_text(), update)
        .prop_map(|(command_id, update)| CommandUpdate { command_id, update })
        .boxed()
}

fn process_probe() -> impl Strategy<Value = ProcessProbe> {
    (
        prop_oneof![
            Just(ProcessState::Running),
            Just(ProcessState::NotRunning),
            Just(ProcessState::Stopped),
            Just(ProcessState::Unknown)
        ],
        option::of(1u32..),
        detail(),
    )
        .prop_map(|(state, pid, detail)| ProcessProbe { state, pid, detail })
}

fn port_probe() -> impl Strategy<Value = PortProbe> {
    (
        1u16..,
        prop_oneof![
            Just(PortState::Listening),
            Just(PortState::Refused),
            Just(PortState::Timeout),
            Just(PortState::Error)
        ],
        detail(),
    )
        .prop_map(|(port, state, detail)| PortProbe {
            port,
            state,
            detail,
        })
}

fn http_probe() -> impl Strategy<Value = HttpProbe> {
    (
        prop_oneof![
            Just(HttpClass::Ok),
            Just(HttpClass::Timeout),
            Just(HttpClass::ServerError),
            Just(HttpClass::Refused),
            Just(HttpClass::Intermittent),
            Just(HttpClass::Error)
        ],
        option::of(100u16..=599),
        any::<u32>(),
        option::of(any::<u32>()),
        any::<u32>(),
        any::<u32>(),
        detail(),
    )
        .prop_map(
            |(class, status_code, latency_ms, p99_ms, a, b, detail)| HttpProbe {
                class,
                status_code,
                latency_ms,
                p99_ms,
                window_failures: a.min(b),
                window_size: a.max(b),
                detail,
            },
        )
}

fn metrics_probe() -> impl Strategy<Value = MetricsProbe> {
    let m = || option::of(measure());
    let ok = (m(), m(), m(), m(), m(), m(), m()).prop_map(
        |(
            memory_bytes,
            connections,
            queue_depth,
            error_rate,
            process_count,
            uptime_seconds,
            requests_total,
        )| ServiceMetrics {
            memory_bytes,
            connections,
            queue_depth,
            error_rate,
            process_count,
            uptime_seconds,
            requests_total,
        },
    );
    prop_oneof![ok.prop_map(Ok), detail().prop_map(Err)].prop_map(|result| MetricsProbe { result })
}

fn log_probe() -> impl Strategy<Value = LogProbe> {
    let ok = (
        any::<u32>(),
        option::of(measure()),
        proptest::collection::vec(detail(), 0..=8),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(
            |(errors_last_minute, error_rate, last_errors, lines_read, errors_since_start)| {
                LogFacts {
                    errors_last_minute,
                    error_rate,
                    last_errors,
                    lines_read,
                    errors_since_start,
                }
            },
        );
    prop_oneof![ok.prop_map(Ok), detail().prop_map(Err)].prop_map(|result| LogProbe { result })
}

fn host_probe() -> impl Strategy<Value = HostProbe> {
    (
        measure(),
        any::<u64>(),
        any::<u64>(),
        (measure(), measure(), measure()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                cpu_percent,
                memory_total_bytes,
                memory_used_bytes,
                (load1, load5, load15),
                disk_free_bytes,
                disk_total_bytes,
            )| HostProbe {
                cpu_percent,
                memory_total_bytes,
                memory_used_bytes,
                load1,
                load5,
                load15,
                disk_free_bytes,
                disk_total_bytes,
            },
        )
}

fn erlang_probe() -> impl Strategy<Value = ErlangProbe> {
    let rpc = (
        detail(),
        prop_oneof![detail().prop_map(Ok), detail().prop_map(Err)],
    )
        .prop_map(|(name, outcome)| RpcResult { name, outcome });
    (
        any::<bool>(),
        detail(),
        option::of(measure()),
        option::of(measure()),
        proptest::collection::vec(rpc, 0..=4),
        option::of(measure()),
    )
        .prop_map(
            |(
                reachable,
                reason,
                memory_total_bytes,
                message_queue_len,
                rpcs,
                replication_lag_ms,
            )| {
                ErlangProbe {
                    reachable,
                    reason,
                    memory_total_bytes,
                    message_queue_len,
                    rpcs,
                    replication_lag_ms,
                }
            },
        )
}

fn role_state() -> impl Strategy<Value = AgentRoleState> {
    (
        role(),
        epoch(),
        any::<bool>(),
        any::<u32>(),
        any::<bool>(),
        any::<bool>(),
        detail(),
    )
        .prop_map(
            |(role, epoch, lease_valid, lease_remaining_ms, fenced, promoted, busy_with)| {
                AgentRoleState {
                    role,
                    epoch,
                    lease_valid,
                    lease_remaining_ms,
                    fenced,
                    promoted,
                    busy_with,
                }
            },
        )
}

pub fn report() -> BoxedStrategy<HealthReport> {
    (
        any::<u64>(),
        any::<u64>(),
        option::of(process_probe()),
        proptest::collection::vec(port_probe(), 0..=4),
        option::of(http_probe()),
        option::of(metrics_probe()),
        option::of(log_probe()),
        option::of(host_probe()),
        option::of(erlang_probe()),
        option::of(role_state()),
    )
        .prop_map(
            |(
                seq,
                probed_at_unix_ms,
                process,
                ports,
                http,
                metrics,
                log,
                host,
                erlang,
                role_state,
            )| {
                HealthReport {
                    seq,
                    probed_at_unix_ms,
                    process,
                    ports,
                    http,
                    metrics,
                    log,
                    host,
                    erlang,
                    role_state,
                }
            },
        )
        .boxed()
}

pub fn agent_message() -> BoxedStrategy<AgentMessage> {
    prop_oneof![
        hello().prop_map(AgentMessage::Hello),
        report().prop_map(AgentMessage::Report),
        (any::<u64>(), epoch()).prop_map(|(request_id, epoch)| AgentMessage::LeaseRequest(
            LeaseRequest { request_id, epoch }
        )),
        command_update().prop_map(AgentMessage::CommandUpdate),
        (epoch(), detail())
            .prop_map(|(epoch, reason)| AgentMessage::LeaseRelease(LeaseRelease { epoch, reason })),
    ]
    .boxed()
}

pub fn controller_message() -> BoxedStrategy<ControllerMessage> {
    prop_oneof![
        welcome().prop_map(ControllerMessage::Welcome),
        ack().prop_map(ControllerMessage::Ack),
        lease_grant().prop_map(ControllerMessage::LeaseGrant),
        command().prop_map(ControllerMessage::Command),
    ]
    .boxed()
}

fn category() -> impl Strategy<Value = Category> {
    prop_oneof![
        Just(Category::ProcessCrash),
        Just(Category::NetworkIssue),
        Just(Category::DataProblem),
        Just(Category::NodeFailure),
        Just(Category::Overload),
        Just(Category::ApplicationError),
        Just(Category::MemoryLeak),
        Just(Category::NoCandidate),
        Just(Category::BackupFailure),
        Just(Category::RestoreFailure),
        Just(Category::ReplicaSync),
    ]
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Open),
        Just(Phase::Acting),
        Just(Phase::Verifying),
        Just(Phase::Watching),
        Just(Phase::Resolved),
    ]
}

fn entry_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Detected),
        Just(EntryKind::Classified),
        Just(EntryKind::Action),
        Just(EntryKind::Verification),
        Just(EntryKind::Escalation),
        Just(EntryKind::Resolved),
        Just(EntryKind::Note),
    ]
}

pub fn incident() -> BoxedStrategy<Incident> {
    let entry =
        (any::<u64>(), entry_kind(), detail()).prop_map(|(at_unix_ms, kind, text)| TimelineEntry {
            at_unix_ms,
            kind,
            text,
        });
    (
        (
            any::<u64>(),
            group(),
            option::of(host()),
            category(),
            detail(),
        ),
        (
            any::<u64>(),
            option::of(any::<u64>()),
            phase(),
            any::<u32>(),
        ),
        proptest::collection::vec(entry, 0..=6),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(
                (id, group, host, category, title),
                (opened_at_unix_ms, resolved_at_unix_ms, phase, escalation_step),
                timeline,
                time_to_recovery_ms,
            )| Incident {
                id,
                group,
                host,
                category,
                title,
                opened_at_unix_ms,
                resolved_at_unix_ms,
                phase,
                escalation_step,
                timeline,
                time_to_recovery_ms,
            },
        )
        .boxed()
}

pub fn role_change() -> BoxedStrategy<RoleChange> {
    (
        (group(), epoch(), option::of(host()), host()),
        prop_oneof![
            Just(ChangeKind::Initial),
            Just(ChangeKind::Failover),
            Just(ChangeKind::Switchover),
            Just(ChangeKind::Manual),
        ],
        (
            any::<u64>(),
            option::of(any::<u64>()),
            option::of(1u64..),
            detail(),
        ),
    )
        .prop_map(
            |((group, epoch, from, to), kind, (at_unix_ms, rto_ms, incident_id, reason))| {
                RoleChange {
                    group,
                    epoch,
                    from,
                    to,
                    kind,
                    at_unix_ms,
                    rto_ms,
                    incident_id,
                    reason,
                }
            },
        )
        .boxed()
}

fn member_view() -> BoxedStrategy<MemberView> {
    (
        (host(), role(), health()),
        proptest::collection::vec(detail(), 0..=4),
        (option::of(any::<u64>()), option::of(any::<u64>())),
        (any::<bool>(), detail(), option::of(report())),
    )
        .prop_map(
            |(
                (host, role, health),
                reasons,
                (last_seen_ms, lease_remaining_ms),
                (connected, agent_version, last_report),
            )| MemberView {
                host,
                role,
                health,
                reasons,
                last_seen_ms,
                lease_remaining_ms,
                connected,
                agent_version,
                last_report,
            },
        )
        .boxed()
}

pub fn status_view() -> BoxedStrategy<StatusView> {
    let group_view = (
        (group(), epoch(), option::of(host()), mode()),
        proptest::collection::vec(member_view(), 0..=3),
        (
            option::of(
                proptest::collection::vec(any::<char>(), 1..=40).prop_map(String::from_iter),
            ),
            any::<u32>(),
        ),
    )
        .prop_map(
            |((name, epoch, primary, mode), members, (transition, open_incidents))| GroupView {
                name,
                epoch,
                primary,
                mode,
                members,
                transition,
                open_incidents,
            },
        );
    (
        detail(),
        any::<bool>(),
        any::<u64>(),
        proptest::collection::vec(group_view, 0..=2),
    )
        .prop_map(
            |(controller_id, leader, generated_at_unix_ms, groups)| StatusView {
                controller_id,
                leader,
                generated_at_unix_ms,
                groups,
            },
        )
        .boxed()
}
