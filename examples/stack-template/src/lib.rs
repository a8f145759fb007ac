//! `template`: a TCP function block to copy when you start a stack of your own.
//!
//! It is a complete, working block: plugtcp's shared TCP engine (`stacks/engine`, the one
//! `base` and `rack` are made of) under a [`Personality`] of its own, wrapped in a type
//! that implements [`TcpStack`] itself and forwards **every** hook to the engine. Each
//! forwarding hook says when the host calls it and what a stack may do there; the full
//! contract is in `framework/abi/src/stack.rs` ("The host<->stack contract", and each
//! `TcpStack` method's docs). To make the stack yours, replace the hooks one at a time:
//! the engine keeps running everything you have not replaced yet.
//!
//! What the template adds to the engine, so that you can see it is in charge of a
//! connection:
//!
//! - it counts the segments each connection hands it (`do_segment` calls): per connection
//!   through its own socket option, getsockopt([`IPPROTO_TCP`], [`TCP_TEMPLATE_SEGS`]), and
//!   for the whole block in the counter `template_segments` (after the engine's own
//!   counters), which the host exports (Prometheus: `plugtcp_stack_counter_total{stack=
//!   "template",counter="template_segments"}`).
//!
//! Build with `cargo build --release`: `target/release/libplugtcp_stack_template.so` is the
//! file `plugtcp kldload` loads. README.md walks through loading it into a running host and
//! switching a live connection to it.

use plugtcp_abi::abi_stable::std_types::RStr;
use plugtcp_abi::segment::SegIn;
use plugtcp_abi::sockopt::{SockOpt, SockOptDir, IPPROTO_TCP};
use plugtcp_abi::stack::{tcp_func, ChgQuery, InitMode, OldStack, StackCtx, TcpInfo, TcpStack};
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcp_engine::{LossDetection, Personality, Stack};

/// The block's name: what `setsockopt(TCP_FUNCTION_BLK)`, `tcpsso ... TCP_FUNCTION_BLK`,
/// `net.inet.tcp.functions_default` and kldstat use. 1 to 31 bytes, unique among every
/// registered block's names and aliases (the host refuses a second `template`: EALREADY).
pub const NAME: &str = "template";

/// getsockopt(IPPROTO_TCP, TCP_TEMPLATE_SEGS): an int, the segments this connection has
/// handed to this block since it took the connection over (saturating). Read only (a set is
/// EINVAL).
///
/// The host passes every option it does not answer itself to the stack's `ctloutput`, so a
/// stack may define options of its own. There is no range reserved for them: pick a number
/// far from FreeBSD's (below 0x1_0000), Linux's (0x1_xxxx) and plugtcp's own (0x2_xxxx).
pub const TCP_TEMPLATE_SEGS: i32 = 0x7_0001;

/// The engine's counters (its `ctr` indices stay valid), then this block's own.
const ENGINE_COUNTERS: usize = plugtcp_tcp_engine::COUNTERS.len();
/// Index of `template_segments` in the block's counters.
pub const CTR_SEGMENTS: usize = ENGINE_COUNTERS;
const COUNTER_NAMES: [RStr<'static>; ENGINE_COUNTERS + 1] = {
    let mut names = [RStr::from_str(""); ENGINE_COUNTERS + 1];
    let mut i = 0;
    while i < ENGINE_COUNTERS {
        names[i] = plugtcp_tcp_engine::COUNTERS[i];
        i += 1;
    }
    names[CTR_SEGMENTS] = RStr::from_str("template_segments");
    names
};

/// What makes the engine this block: its name, flags, loss detection and handoff rule.
/// The wrapper below takes its name and flags from here too, so there is one place to
/// rename the block.
pub struct TemplatePersonality;

impl Personality for TemplatePersonality {
    const NAME: &'static str = NAME;
    /// DEFAULT_OK: an operator may make it `net.inet.tcp.functions_default`.
    const FLAGS: u32 = tcp_func::DEFAULT_OK;
    /// RFC 6675 recovery, as `base`; `LossDetection::RackTlp` is `rack`'s.
    const LOSS: LossDetection = LossDetection::Rfc6675;

    /// Takes over a connection in any state, as FreeBSD's default stack does. FreeBSD's rack
    /// refuses mid-handshake (EAGAIN) and without SACK (EINVAL): see `stacks/rack`.
    fn handoff_ok(_cx: &StackCtx) -> Result<(), Errno> {
        Ok(())
    }
}

/// The engine under the template's personality: what every hook forwards to.
pub type Engine = Stack<TemplatePersonality>;

/// The block's per-connection state (FreeBSD's `t_fb_ptr`): made by `init`, consumed by
/// `fini`. What the host and every stack share is in the `StackCtx` each hook gets.
pub struct Template {
    /// The engine's state for this connection.
    engine: Engine,
    /// Segments this connection handed to this block (`TCP_TEMPLATE_SEGS`).
    segments: u64,
}

impl Template {
    /// The engine's state, for tests and for hooks you replace.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Segments this connection handed to this block so far.
    pub fn segments(&self) -> u64 {
        self.segments
    }
}

impl TcpStack for Template {
    const NAME: &'static str = TemplatePersonality::NAME;
    /// Further names (at most 7). `base` has `default` and `freebsd`.
    const ALIASES: &'static [RStr<'static>] = &[];
    const FLAGS: u32 = TemplatePersonality::FLAGS;
    /// The engine's counters (the engine counts into them by index), then ours.
    const COUNTERS: &'static [RStr<'static>] = &COUNTER_NAMES;

    /// tfb_tcp_fb_init. **When**: `InitMode::Fresh` for a new connection on this block (a
    /// socket in CLOSED; or one the SYN cache made, in SYN_RECEIVED, before `inherit`);
    /// `InitMode::Switch` when a live connection switches to it (after `handoff_ok`), with
    /// no timer armed: the new stack arms what the connection's state needs. **May**: read
    /// the tcpcb, buffers and tunables, arm timers, ask the old stack (`old.query`).
    /// **Must not** write to the tcpcb before it can no longer fail (a failed switch keeps
    /// the changes). An errno refuses the connection (Fresh) or the switch (Switch).
    fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno> {
        Ok(Template {
            engine: Engine::init(cx, mode, old)?,
            segments: 0,
        })
    }

    /// tfb_tcp_fb_fini. **When**: once, last: `purged == false` after a switch away (the new
    /// stack is in charge; what this one arms or stops is undone), `true` when the
    /// connection is freed (the host handle may be null then: every op does nothing).
    /// **May** release its own resources.
    fn fini(self, cx: &mut StackCtx, purged: bool) {
        self.engine.fini(cx, purged)
    }

    /// tcp_do_segment. **When**: for every segment (or LRO aggregate) for the connection,
    /// in any state but TIME_WAIT (the host's), CLOSED included; checksums verified, nothing
    /// else. **May**: all tcp_input does: the tcpcb, `rcv_write`/`rcv_commit`, `snd_drop`,
    /// the CC, timers, events, output. **Must** send what the segment calls for, unless
    /// `cx.host.input_batch()` is true (the host then calls `output` at the end of the batch).
    /// The host ignores an errno.
    ///
    /// The template's own behaviour: count the segment, per connection and block-wide.
    fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno> {
        self.segments = self.segments.saturating_add(1);
        cx.count(CTR_SEGMENTS, 1);
        self.engine.do_segment(cx, seg)
    }

    /// tcp_output. **When**: after connect (send the SYN), send, recv (a window update may
    /// be due), shutdown and close (the host already moved `t_state`: send the FIN),
    /// send(MSG_OOB), `mtu_chg`, and at the end of a receive batch; in any state. **May**:
    /// send what windows, CC and rules allow, arm timers, report events. Errno ignored.
    fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
        self.engine.output(cx)
    }

    /// tcp_timer_*. **When**: the host clock reached a deadline set with `timer_start`
    /// (`which` is a `tt::*`); the timer is already forgotten (re-arm it here for another
    /// round). Check that the work is still due, as FreeBSD's tcp_timer_* do ("Timers" in
    /// the contract). In TIME_WAIT, `tt::TWO_MSL` must close the connection. **May**:
    /// retransmit, probe, drop the connection, call the CC. Errno ignored.
    fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno> {
        self.engine.timer(cx, which)
    }

    /// tcp_ctloutput. **When**: setsockopt/getsockopt of every option the host does not
    /// answer itself (see `TcpStack::ctloutput`); notifications after the host stored
    /// keepalive and timeout options in the tcpcb (re-arm the keepalive timer); replays of
    /// options already set, after a switch to this block and on an accepted connection.
    /// **Must** accept a set it already has. **Returns** ENOPROTOOPT for an option it does
    /// not know, EINVAL for a bad value: the application gets the errno.
    ///
    /// The template's own option first, then the engine's (TCP_NODELAY, TCP_MAXSEG, ...).
    fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno> {
        if (opt.level, opt.name) == (IPPROTO_TCP, TCP_TEMPLATE_SEGS) {
            return match opt.dir {
                SockOptDir::Get => opt.reply_int(self.segments.min(i32::MAX as u64) as i32),
                SockOptDir::Set => Err(Errno::EINVAL),
            };
        }
        self.engine.ctloutput(cx, opt)
    }

    /// tfb_tcp_handoff_ok. **When**: first thing in a switch to this block (setsockopt
    /// TCP_FUNCTION_BLK, a forced unload moving users); never for a new connection; there
    /// is no state yet. **May** only look. An errno refuses the switch and goes to the
    /// application as is.
    fn handoff_ok(cx: &StackCtx) -> Result<(), Errno> {
        <Engine as TcpStack>::handoff_ok(cx)
    }

    /// tfb_tcp_mtu_chg. **When**: an ICMP "fragmentation needed" for data in flight; the
    /// host already lowered `t_maxseg`, set `snd_nxt = snd_una` and `snd_recover =
    /// snd_max`, and calls `output` next. **May** forget segment boundaries, SACK and RTT
    /// state of what is in flight. Errno ignored.
    fn mtu_chg(&mut self, cx: &mut StackCtx, mtu: u32) -> Result<(), Errno> {
        self.engine.mtu_chg(cx, mtu)
    }

    /// tfb_switch_failed. **When**: a switch away from this block failed (the new block's
    /// `init` refused or panicked); the host already put back this stack's timers and
    /// counters; whatever the failed `init` wrote into the tcpcb stays. **May** re-check
    /// its state against the tcpcb. Errno ignored.
    fn switch_failed(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
        self.engine.switch_failed(cx)
    }

    /// tfb_chg_query. **When**: the block being switched in asks this one (its `init` in
    /// Switch mode called `old.query`); this stack's timers are stopped. **May** only
    /// look; set `q.answered = 1` for a question it answers (`query::*`).
    fn chg_query(&self, cx: &StackCtx, q: &mut ChgQuery) -> Result<(), Errno> {
        self.engine.chg_query(cx, q)
    }

    /// tcp_fill_info. **When**: getsockopt(TCP_INFO) (and `plugtcp sockstat`); `out`
    /// arrives filled from the tcpcb. **May** only look, and overwrite fields with better
    /// values (the engine reports its RTT estimate, the receive window, ...). An errno
    /// fails the getsockopt.
    fn info(&self, cx: &StackCtx, out: &mut TcpInfo) -> Result<(), Errno> {
        self.engine.info(cx, out)
    }

    /// tfb_inherit. **When**: once for a connection the SYN cache made (SYN_RECEIVED),
    /// right after `init(Fresh)`, before the listener's options are replayed and before the
    /// handshake's ACK reaches `do_segment`; `listener` is the listener's tcpcb. **May**
    /// adjust its state and the new tcpcb. An errno frees the connection (RST to the peer).
    fn inherit(&mut self, cx: &mut StackCtx, listener: &Tcpcb) -> Result<(), Errno> {
        self.engine.inherit(cx, listener)
    }
}

plugtcp_abi::export_function_block!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use plugtcp_abi::segment::th;
    use plugtcp_abi::stack::tt;
    use plugtcp_abi::TcpState;
    use plugtcp_tcpkit::stack::testing::{Handshake, PeerSeg, TestConn, MS};

    /// A plain engine block (as `base`): where a live connection comes from in a switch.
    struct FromPersonality;
    impl Personality for FromPersonality {
        const NAME: &'static str = "from";
        const LOSS: LossDetection = LossDetection::Rfc6675;
        fn handoff_ok(_cx: &StackCtx) -> Result<(), Errno> {
            Ok(())
        }
    }
    type Other = Stack<FromPersonality>;

    const ISS: u32 = 1000;
    const IRS: u32 = 5000;

    #[test]
    fn descriptor_is_the_template() {
        let b = function_block();
        assert_eq!(b.name().as_str(), "template");
        assert_eq!(b.flags(), tcp_func::DEFAULT_OK);
        let names: Vec<&str> = b.counters().iter().map(|n| n.as_str()).collect();
        assert_eq!(names.len(), plugtcp_tcp_engine::COUNTERS.len() + 1);
        assert_eq!(names[CTR_SEGMENTS], "template_segments");
        assert_eq!(names[plugtcp_tcp_engine::ctr::RTO], "rexmttimeo");
        // Every hook is there: the host needs do_segment, output, ctloutput, handoff_ok.
        assert!(b.init().is_some() && b.fini().is_some() && b.timer().is_some());
        assert!(b.do_segment().is_some() && b.output().is_some() && b.ctloutput().is_some());
        assert!(b.handoff_ok().is_some() && b.mtu_chg().is_some() && b.info().is_some());
        assert!(b.switch_failed().is_some() && b.chg_query().is_some() && b.inherit().is_some());
    }

    #[test]
    fn handshake_and_data_through_the_forwarded_hooks() {
        let mut c = TestConn::of::<Template>();
        c.connect(ISS).unwrap();
        assert_eq!(c.take_one().key(), (ISS, 0, th::SYN, 0));
        c.advance(10 * MS);
        c.input(&PeerSeg::syn_ack(IRS, ISS + 1).mss(1460));
        assert_eq!(c.state(), TcpState::Established);
        assert_eq!(c.take_one().key(), (ISS + 1, IRS + 1, th::ACK, 0));
        // Data both ways.
        c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            c.take_one().key(),
            (ISS + 1, IRS + 1, th::ACK | th::PUSH, 18)
        );
        c.input(&PeerSeg::ack(IRS + 1, ISS + 19).data(b"HTTP/1.0 200 OK\r\n"));
        assert_eq!(c.rcv_readable(), b"HTTP/1.0 200 OK\r\n");
        // The template's own count: the SYN-ACK and the data segment.
        assert_eq!(c.stack_state::<Template>().segments(), 2);
        assert_eq!(c.getsockopt_int(IPPROTO_TCP, TCP_TEMPLATE_SEGS), Ok(2));
        assert_eq!(c.counter("template_segments"), 2);
        assert_eq!(
            c.setsockopt_int(IPPROTO_TCP, TCP_TEMPLATE_SEGS, 0),
            Err(Errno::EINVAL),
            "read only"
        );
        // The engine's options still answer through the forwarding ctloutput.
        c.setsockopt_int(IPPROTO_TCP, plugtcp_abi::sockopt::TCP_NODELAY, 1)
            .unwrap();
        assert_eq!(
            c.getsockopt_int(IPPROTO_TCP, plugtcp_abi::sockopt::TCP_NODELAY),
            Ok(plugtcp_abi::tcpcb::tf::NODELAY as i32)
        );
        assert_eq!(
            c.getsockopt_int(IPPROTO_TCP, 0x7_7777),
            Err(Errno::ENOPROTOOPT)
        );
        // TCP_INFO comes from the engine's info hook: its RTT estimate and the host's
        // receive window.
        let info = c.tcp_info().unwrap();
        assert_eq!(info.tcpi_rtt, c.tp().t_srtt);
        assert!(info.tcpi_rtt > 0);
        assert_eq!(info.tcpi_rcv_space, c.rcv_space());
    }

    #[test]
    fn takes_over_a_live_connection_and_retransmits_what_was_in_flight() {
        // A connection established on another block of the engine, data in flight.
        let mut c = TestConn::of::<Other>();
        c.active_open(&Handshake::default());
        let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        c.send(&data).unwrap();
        let first = c.take_sent();
        assert_eq!(first.len(), 2);
        let rexmt = c.deadline(tt::REXMT).unwrap();
        // A duplicate ACK, taken by the old block: not counted by the template.
        c.input(&PeerSeg::ack(IRS + 1, ISS + 1));
        assert!(c.sent().is_empty());
        // setsockopt(TCP_FUNCTION_BLK) "template": handoff_ok, init(Switch), the old fini.
        c.switch_to(function_block()).unwrap();
        assert_eq!(c.block().name().as_str(), "template");
        assert_eq!(c.state(), TcpState::Established);
        // The engine's init re-armed the retransmit timer for what is outstanding (the
        // host kept the old, sooner deadline); the count starts on this block.
        assert_eq!(c.deadline(tt::REXMT), Some(rexmt));
        assert_eq!(c.getsockopt_int(IPPROTO_TCP, TCP_TEMPLATE_SEGS), Ok(0));
        c.fire(tt::REXMT);
        let again = c.take_sent();
        assert_eq!(again[0].key(), first[0].key());
        assert_eq!(again[0].payload, first[0].payload);
        // The peer's ACK of everything: counted, the timer stopped.
        c.input(&PeerSeg::ack(IRS + 1, ISS + 2001));
        assert_eq!(c.tp().snd_una, ISS + 2001);
        assert_eq!(c.timer(tt::REXMT), None);
        assert_eq!(c.getsockopt_int(IPPROTO_TCP, TCP_TEMPLATE_SEGS), Ok(1));
        assert_eq!(c.counter("template_segments"), 1);
    }

    #[test]
    fn accepted_connection_and_close() {
        let mut c = TestConn::accepted::<Template>(&Handshake::default());
        assert_eq!(c.state(), TcpState::Established);
        c.input(&PeerSeg::ack(IRS + 1, ISS + 1).data(b"bye").fin());
        assert_eq!(c.state(), TcpState::CloseWait);
        assert_eq!(c.take_one().key(), (ISS + 1, IRS + 5, th::ACK, 0));
        c.close();
        assert_eq!(c.take_one().key(), (ISS + 1, IRS + 5, th::FIN | th::ACK, 0));
        c.input(&PeerSeg::ack(IRS + 5, ISS + 2));
        assert!(c.is_closed());
        assert_eq!(c.counter("template_segments"), 3);
    }
}
