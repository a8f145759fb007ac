//! Helpers shared by the integration tests.
#![allow(dead_code)]

use plugtcp_packetdrill::*;

/// Parses a script that must be valid.
pub fn parse(text: &str) -> Script {
    match parse_script("test.pkt", text, &[]) {
        Ok(script) => script,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Parses a script that must fail and returns the displayed error.
pub fn parse_err(text: &str) -> String {
    match parse_script("test.pkt", text, &[]) {
        Ok(script) => panic!("expected an error, parsed: {script:?}"),
        Err(e) => e.to_string(),
    }
}

/// The only event of a one-event script.
pub fn single_event(text: &str) -> Event {
    let mut script = parse(text);
    assert_eq!(script.events.len(), 1, "{script:?}");
    script.events.remove(0)
}

pub fn packet(text: &str) -> PacketEvent {
    match single_event(text).kind {
        EventKind::Packet(p) => p,
        other => panic!("not a packet: {other:?}"),
    }
}

pub fn tcp(text: &str) -> TcpSegmentSpec {
    match packet(text).body {
        PacketBody::Tcp(t) => t,
        other => panic!("not TCP: {other:?}"),
    }
}

pub fn syscall(text: &str) -> SyscallEvent {
    match single_event(text).kind {
        EventKind::Syscall(s) => s,
        other => panic!("not a syscall: {other:?}"),
    }
}

/// The script with every line number set to 0, to compare scripts that were printed and
/// parsed again.
pub fn without_lines(mut script: Script) -> Script {
    for option in &mut script.options {
        option.line = 0;
    }
    for command in script
        .init_command
        .iter_mut()
        .chain(script.cleanup_command.iter_mut())
    {
        command.line = 0;
    }
    for event in &mut script.events {
        event.line = 0;
        match &mut event.kind {
            EventKind::Syscall(call) => {
                call.args.iter_mut().for_each(expr_without_lines);
                expr_without_lines(&mut call.result);
            }
            EventKind::Command(command) => command.line = 0,
            EventKind::Code(code) => code.line = 0,
            EventKind::Packet(_) => {}
        }
    }
    script
}

fn expr_without_lines(expr: &mut Expr) {
    expr.line = 0;
    match &mut expr.kind {
        ExprKind::BitOr(items) | ExprKind::List(items) => {
            items.iter_mut().for_each(expr_without_lines)
        }
        ExprKind::Struct(fields) => {
            for field in fields {
                field.line = 0;
                field.len.iter_mut().for_each(expr_without_lines);
                expr_without_lines(&mut field.value);
            }
        }
        ExprKind::Htons(inner) | ExprKind::Htonl(inner) => expr_without_lines(inner),
        _ => {}
    }
}

/// Printing the script and parsing the result gives the same AST (lines aside).
pub fn assert_round_trips(script: &Script) {
    let printed = script.to_string();
    let again = match parse_script("printed.pkt", &printed, &[]) {
        Ok(s) => s,
        Err(e) => panic!("printed script does not parse: {e}\n{printed}"),
    };
    let mut expected = without_lines(script.clone());
    expected.path = "printed.pkt".to_string();
    assert_eq!(without_lines(again), expected, "printed:\n{printed}");
}
