//! TCP function blocks (whole TCP stacks), after FreeBSD's `struct tcp_function_block`
//! (tcp_functions(9)), and the sans-IO interface through which a stack asks the host for
//! things: transmit, socket-buffer bytes, timers, the clock, connection events.
//!
//! A stack implements [`TcpStack`]; [`crate::export_function_block!`] turns it into the ABI
//! descriptor [`TcpFunctionBlock`] (every hook wrapped so that a panic becomes
//! [`HookStatus::PANICKED`]) and exports it. Each hook's own contract is on the
//! [`TcpStack`] method; this section is the whole picture.
//!
//! # The host<->stack contract
//!
//! This describes what the host (`host/core`) does today. Where it does something a
//! FreeBSD stack author would not expect, the text says so.
//!
//! ## Division of labour
//!
//! The host does, for every stack and without asking it: IP and TCP parsing, checksums and
//! demultiplexing; IP fragment reassembly; listeners, the SYN cache and SYN cookies (a
//! stack never runs a listener and never sees a SYN for one: on a passive open its first
//! segment is the handshake's ACK, in SYN_RECEIVED); RSTs for segments that match no
//! connection; TIME_WAIT ("What the host does by itself" below); ICMP; the socket buffers
//! and the socket API; TSO segmentation and LRO. The stack runs the TCP state machine
//! between those: sequence space, windows, ACK policy, retransmission and loss recovery,
//! the FIN handshake, its timers, and the calls into the connection's CC module
//! ([`crate::cc::CcConn`]) where FreeBSD's tcp_input/tcp_output call mod_cc.
//!
//! Hooks are called on the thread that drives the host, one at a time per connection; none
//! may block. A hook gets the connection's [`StackCtx`] for the duration of the call only:
//! its `host` handle and `tunables` pointer are valid during the call and null outside it
//! (a connection dropped without the host's `close` gets `fini` with a null host handle:
//! every host op then does nothing, `output` fails with ENOTCONN and `now` is 0).
//!
//! ## Life of a connection
//!
//! - **Active open.** socket(2) makes a CLOSED connection, attaches the default CC
//!   (`cb_init`) and then the default stack (`init` in [`InitMode::Fresh`]); options may be
//!   set (`ctloutput`). connect(2): the host itself writes SYN_SENT (`t_state`, `iss`,
//!   `snd_una = snd_nxt = snd_max = snd_up = snd_recover = iss`, `t_starttime`,
//!   `tf::REQ_SCALE` with `request_r_scale`, `tf::REQ_TSTMP` with `ts_offset`, per the
//!   `rfc1323` sysctl) and calls `output`: the stack sends the SYN and arms its timers.
//! - **Passive open.** The ACK that completes a handshake in the host's SYN cache makes the
//!   connection, already in SYN_RECEIVED with what the SYN cache agreed (see the tcpcb
//!   section), and attaches the listener's CC (`cb_init`) and stack (`init` in
//!   `Fresh` mode); then `inherit` runs with the listener's tcpcb, the host replays the
//!   options set on the listener (`ctloutput`), and the ACK goes to `do_segment`. The
//!   stack completes the handshake and reports [`ConnEvent::Connected`], which puts the
//!   connection in the accept queue.
//! - **Running.** Segments, timers, application calls and options arrive as below.
//! - **End.** The stack reports [`ConnEvent::Closed`] (or leaves `t_state` CLOSED): the
//!   host takes the connection out of its lookup table (later segments for the 4-tuple are
//!   treated as for no connection) and, once the application has closed the socket (or
//!   never accepted it), frees it: `fini(purged = true)`, the CC's `cb_destroy`, timers and
//!   buffers released.
//!
//! ## Events the host delivers
//!
//! | what happened | call | notes |
//! | --- | --- | --- |
//! | a segment for the connection | `do_segment` | in any state but TIME_WAIT (the host answers those); CLOSED included while the connection is in the lookup table (a socket given its 4-tuple before connect) |
//! | end of a receive batch | `output` | once per connection that got segments in the batch ("Batching") |
//! | a timer fired | `timer(which)` | "Timers" |
//! | connect(2) | `output` | after the host wrote SYN_SENT |
//! | send(2) | `output` | after the bytes were appended to the send buffer (no call when none fit: EAGAIN) |
//! | send(MSG_OOB) | `output` | after the host set `snd_up` past the new last byte |
//! | recv(2) | `output` | after the application consumed bytes (a window update may be due) |
//! | shutdown(SHUT_WR) | `output` | after the host moved `t_state`: SYN_RECEIVED/ESTABLISHED to FIN_WAIT_1, CLOSE_WAIT to LAST_ACK (in SYN_SENT it sets CLOSED and frees the connection instead) |
//! | close(2) | `output`, twice | the host sets `tf::CLOSED`, throws unread data away, does shutdown(SHUT_WR) (one `output`), then calls `output` again; a CLOSED connection is freed instead |
//! | setsockopt/getsockopt | `ctloutput` | options the host does not answer itself, and a notification after the host stored SO_KEEPALIVE, TCP_KEEPINIT/IDLE/INTVL/CNT or TCP_USER_TIMEOUT in the tcpcb |
//! | ICMP "fragmentation needed" | `mtu_chg(mtu)`, then `output` | the host already lowered `t_maxseg` and rewound `snd_nxt` |
//! | getsockopt(TCP_INFO) | `info` | |
//! | accept (passive open) | `inherit` | see above |
//! | setsockopt(TCP_FUNCTION_BLK) | `handoff_ok`, `init(Switch)`, then the old stack's `fini(false)` or `switch_failed` | "Stack switch" |
//!
//! There are no hooks for the application's calls: as in FreeBSD, where pru_send, pru_rcvd
//! and pru_shutdown end in tcp_output, the host changes the shared state (buffers, tcpcb)
//! and calls `output`, and the stack works out from the tcpcb and the buffers what to
//! send. Unlike FreeBSD, even the state transition of shutdown and close
//! (tcp_usrclosed) is made by the host, before `output`.
//!
//! After shutdown(SHUT_RD) the host clears the receive buffer, and after each later
//! `do_segment`, `timer` or `output` call it discards whatever became readable (FreeBSD's
//! SBS_CANTRCVMORE); the stack keeps acknowledging, and the window stays open.
//!
//! ## The tcpcb: what the host reads and writes
//!
//! The host **reads** these fields, so a stack must keep them current:
//!
//! - `t_state`: the socket calls (EPIPE, ENOTCONN, end of stream), demultiplexing
//!   (TIME_WAIT is the host's), LRO placement (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2 only),
//!   freeing (CLOSED), stack switches, metrics.
//! - `t_softerror`: returned by the application's next send/recv once non-zero, so set it
//!   before closing a failed connection.
//! - `t_flags2 & tf2::FIN_RCVD`: recv's end of stream (once the buffer is empty), and where
//!   the urgent byte sits.
//! - `rcv_nxt`: where LRO places payloads; the urgent byte; the host's TIME_WAIT ACKs.
//!   `rcv_up`: after [`ConnEvent::Urgent`].
//! - `snd_una`, `snd_max`: whether an ICMP error quotes a sequence number in flight.
//! - `snd_nxt`, `snd_max`, `rcv_nxt`, `rcv_scale`, `ts_recent`, `ts_offset`, `t_flags`
//!   (`RCVD_TSTMP`, `REQ_TSTMP`, `NOOPT`): the segments the host sends itself (TIME_WAIT
//!   ACKs; the RST of a drop, [`Tcpcb::drop_rst`]).
//! - `t_maxseg`: ICMP (only a smaller path MTU counts). `t_rxtshift`: ICMP soft errors
//!   during the handshake (above 3, the connection is dropped). `iss`: 0 means "never
//!   connected" to connect, listen and the POSIX layer.
//! - `t_keepinit`, `t_keepidle`, `t_keepintvl`, `t_keepcnt`, `t_user_timeout`,
//!   `tf::NODELAY`, `tf::NOPUSH`, `tf::NOOPT`, `tf2::KEEPALIVE`/`QUICKACK`/`CORK`:
//!   getsockopt, and what a listener passes on.
//! - The statistics (the fields from `t_sndrexmitpack` to `t_keepprobe`): TCP_STATS
//!   ([`TcpStats::from_tcpcb`]); six of them (`t_snd_bytes`, `t_rcv_bytes`, `t_snd_segs`,
//!   `t_rcv_segs`, `t_sndrexmitpack`, `t_rexmit_bytes`) also feed the per-(stack, CC)
//!   metrics, and a switch credits what was counted so far to the old pair.
//! - `t_srtt` (as microseconds), `snd_cwnd`: metrics; `t_srtt`, `t_rttvar`, `t_rxtcur`,
//!   `snd_cwnd`, `snd_ssthresh`, `snd_wnd`, `rcv_adv`, `t_maxseg`, `t_dupacks`: the siftr
//!   log; everything [`TcpInfo::from_tcpcb`] reads, when the stack has no `info` hook.
//!
//! The host **writes** these, so a stack must expect them to change between its calls:
//!
//! - Creation: [`Tcpcb::new`] with `t_maxseg` from the link MTU (MTU - 40, or - 60 over
//!   IPv6, at least `minmss`), `tf2::INET6` for an IPv6 connection, `tf2::LOCAL_PEER` when
//!   the peer is one of the host's addresses (and `t_maxseg` for the route on connect).
//! - connect: the SYN_SENT fields listed above.
//! - Passive open (the SYN cache): `t_state` SYN_RECEIVED, `iss`, `irs`,
//!   `snd_una = iss`, `snd_nxt = snd_max = snd_up = iss + 1`, `rcv_nxt = rcv_up = irs + 1`,
//!   `rcv_adv` (`rcv_nxt` plus the SYN-ACK's window), `snd_wl1 = irs`, `t_peer_mss`,
//!   `t_maxseg`; window scaling (`tf::REQ_SCALE | tf::RCVD_SCALE`, `snd_scale`,
//!   `rcv_scale`, `request_r_scale`), timestamps (`tf::REQ_TSTMP | tf::RCVD_TSTMP`,
//!   `ts_recent`, `ts_recent_age`, `ts_offset`), `tf::SACK_PERMIT`, `tf2::ECN_PERMIT`,
//!   `snd_cwnd = 1` when the SYN-ACK was retransmitted; from the listener `tf::NODELAY`,
//!   `tf::NOPUSH`, `tf::NOOPT`, `tf2::KEEPALIVE`, `tf2::QUICKACK`, `tf2::CORK`, the
//!   `t_keep*` values and `t_user_timeout`. It leaves `snd_wnd` at 0 (the stack takes the
//!   window from the ACK) and `snd_una` at the SYN (the stack accounts for the SYN's ACK).
//! - Application calls: `t_state` on shutdown/close (above), `tf::CLOSED` on close,
//!   `snd_up` on send(MSG_OOB), `t_keepinit`/`t_keepidle`/`t_keepintvl` (ms),
//!   `t_keepcnt`, `t_user_timeout` (ms) and `tf2::KEEPALIVE` on setsockopt (then a
//!   `ctloutput` call so that the stack can re-arm its keepalive timer).
//! - Before every stack call: `t_tsomax_segs`.
//! - ICMP "fragmentation needed" (FreeBSD tcp_mtudisc): `t_maxseg` lowered (to the MTU
//!   less headers, at most the send buffer's size), `snd_nxt = snd_una`,
//!   `snd_recover = snd_max`, `tf::FASTRECOVERY` cleared when SACK is on (not
//!   `CONGRECOVERY`); then `mtu_chg` and `output`.
//! - Drops (tcpdrop, ICMP errors, a SYN that recycles TIME_WAIT): `t_state` CLOSED and
//!   `t_softerror`, all timers cancelled, without any stack call.
//! - When a connection leaves the lookup table, an ETIMEDOUT in `t_softerror` is replaced
//!   by the last ICMP soft error, if any (FreeBSD reports t_softerror on timeouts).
//! - The CC: the host attaches modules (`cx.cc.hooks`, `cx.cc.ccv`; TCP_CONGESTION,
//!   reloads, unloads) and, when it attaches one to an established connection, calls its
//!   `conn_init` itself. A stack switch does not touch the CC.
//!
//! Every other field is the stack's; whatever it leaves in the tcpcb is what the next
//! stack gets after a switch.
//!
//! ## Host operations and buffers
//!
//! A stack acts on the world only through `cx.host` ([`HostIf`], wrapping [`HostOps`]).
//! Every op takes effect at once, except [`HostOps::event`], which the host records and
//! acts on after the call returns. `now()` is the host's clock, which its driver sets
//! (normally through `Host::advance`, which also fires the timers that are due): it does
//! not move during a call, and a segment's arrival time is that clock.
//!
//! - **Send buffer**: the application's bytes from the first unacknowledged data byte on
//!   (`snd_una`, or `snd_una + 1` while our SYN is unacknowledged). The stack reads it by
//!   offset (`snd_read`, or by reference in [`SegOut`]), and drops what the peer
//!   acknowledged (`snd_drop`): the host never drops bytes by itself, so `snd_len` is the
//!   unacknowledged plus the unsent bytes only if the stack keeps up.
//! - **Receive buffer**: `rcv_write(off, data)` stores bytes `off` past `rcv_nxt`'s place
//!   (the readable end); `rcv_commit(n)` makes `n` more bytes readable (they must have been
//!   written); `rcv_space` is the window (`rcv_hiwat` less the readable bytes; out-of-order
//!   bytes the stack stored do not count, the stack tracks those itself). The stack owns
//!   reassembly: the host keeps no record of which out-of-order ranges are filled.
//! - **Buffer sizes**: `autosize` grows either buffer within the host's limits.
//! - **Events** ([`ConnEvent`]): `Connected` queues a passive connection for accept (or
//!   holds it for TCP_DEFER_ACCEPT) and counts an active open; `Closed` (like `t_state`
//!   CLOSED) removes the connection from the lookup table and frees it if the application
//!   has closed it or never accepted it; `Urgent` makes the host read `rcv_up` and mark the
//!   urgent byte; `Readable` only ends a TCP_DEFER_ACCEPT wait (readability itself is read
//!   from the buffer); `Writable` and `TimeWait` are recorded but not acted on today. The
//!   host handles events after the `do_segment`, `timer` and `output` calls it makes;
//!   events reported from other hooks (`init`, `ctloutput`, `inherit`, `info`, `fini`)
//!   wait for the next of those calls.
//!
//! ## Timers
//!
//! The host runs [`tt::COUNT`] timers per connection on one timer wheel; a stack arms and
//! cancels them through the host and gets `timer(which)` when one fires.
//!
//! - **Kinds**: `tt::REXMT`, `PERSIST`, `KEEP`, `TWO_MSL`, `DELACK` are the standard
//!   timers and mean the same in every stack: the host relies on that at a stack switch,
//!   arms `TWO_MSL` itself in TIME_WAIT, and reads whether `PERSIST` is armed to build a
//!   drop's RST. `tt::PRIV0` up to `tt::COUNT - 1` (three timers) are the stack's own
//!   (plugtcp's engine uses all three: RACK's reordering timer, the tail loss probe, the
//!   TCP_CORK ceiling). A `which` of `tt::COUNT` or more is ignored (`timer_remaining`
//!   says not armed).
//! - **Units**: nanoseconds. `timer_start(which, delay_ns)` sets the deadline to
//!   `now() + delay_ns`; arming an armed timer moves it (one deadline per kind);
//!   `timer_stop` cancels (nothing if not armed); `timer_remaining` gives the nanoseconds
//!   left, or `None`. The wheel's granularity is 10 µs, but a timer never fires early:
//!   it fires when the host's clock, advanced by its driver, reaches the deadline (a timer
//!   armed with delay 0 fires at the next advance, never inside the current call).
//! - **Firing**: before calling `timer(which)` the host forgets the timer, so inside the
//!   hook it is not armed: a periodic timer re-arms itself there. Timers due at the same
//!   advance are delivered in deadline order (ties: the order they were armed in); one
//!   that an earlier handler of the same advance stopped or re-armed is not delivered (the
//!   re-armed one fires at its new deadline).
//! - **Drops and the end**: the host cancels all timers when it drops a connection itself
//!   and when it frees one; a stack that closes a connection should stop its timers (the
//!   host does not, until the connection is freed).
//! - **Stack switch**: see below; in short, the new stack starts with no timer armed and
//!   arms what the connection's state needs.
//!
//! ## Output and TSO
//!
//! [`HostOps::output`] builds one packet (or, with TSO, several) from a [`SegOut`] at once
//! and queues it for the I/O backend in order: IP and TCP headers, the options, the
//! payload copied from the send buffer. The host adds nothing of TCP's: flags, window,
//! options and the ECN codepoint are the stack's. It fails with EINVAL when the payload is
//! not in the send buffer or a packet would exceed 65535 bytes, EOPNOTSUPP for the
//! TCP-MD5 option, ENOBUFS, EAFNOSUPPORT, ENOTCONN without a host; a failed output
//! changes nothing in the host (plugtcp's engine arms the retransmit timer and carries on,
//! as FreeBSD does on ENOBUFS).
//!
//! **TSO.** A `SegOut` whose `tso_segsz` is non-zero and smaller than `data_len` is cut
//! into `ceil(data_len / tso_segsz)` packets of `tso_segsz` payload bytes (the last
//! shorter), each with the same header and options (timestamps included), its own sequence
//! number, and PSH and FIN only on the last. Limits:
//!
//! - at most `Tcpcb::t_tsomax_segs` packets, which the host sets before every call: 45
//!   (the host's `TSO_MAX_SEGS`, about a 64 KiB IP packet of 1460-byte segments) while the
//!   `net.inet.tcp.tso` sysctl is 1 (the default), 1 (no TSO) when it is 0;
//! - never with SYN, URG or CWR;
//! - a descriptor beyond these is refused whole with EINVAL;
//! - the host does not check `tso_segsz` against `t_maxseg`, nor the descriptor's total
//!   length: each packet must fit an IP packet on its own. plugtcp's engine sends
//!   `tso_segsz = t_maxseg` less the timestamp option, at most
//!   `min(t_tsomax_segs, 65435 / tso_segsz)` segments (65535 less 40 and 60 header bytes),
//!   and no TSO descriptor with SACK blocks, urgent data, a pending CWR, or as a window
//!   probe;
//! - if building one of the packets fails, the ones before it are already queued and the
//!   error is returned: the stack cannot tell how much went out.
//!
//! A `SegOut` without TSO is one packet whatever its length: the host is the NIC and does
//! not enforce the MSS. Counting packets (`t_snd_segs`) is the stack's job.
//!
//! ## Batching
//!
//! When the host's driver receives packets in batches (`Host::batch_begin`/`batch_end`:
//! one link poll, one recvmmsg), [`HostIf::input_batch`] is true in each `do_segment` of a
//! connection's segments of the batch, and at the end of the batch the host calls `output`
//! once for each connection that got segments in it, then handles its events. So a stack
//! may leave its output (the ACK) to that call: plugtcp's engine skips its tcp_output at
//! the end of `do_segment`, so a batch gets one ACK (as FreeBSD's LRO and Linux's GRO give
//! a stack one coalesced segment). Outside a batch `input_batch` is false and the host
//! makes **no** `output` call after `do_segment`: the stack must send what the segment
//! calls for itself.
//!
//! Within a batch, with LRO on (`Host::lro_enabled`, the default), in-order data segments
//! of one connection (ACK, optionally PSH, timestamps as the only option, not CE-marked,
//! equal ack, window, options and ECN codepoint) are merged into one [`SegIn`] of up to
//! 65435 bytes, which may exceed `t_maxseg`; its payload was copied into the receive
//! buffer at `rcv_nxt` already (only for a connection in ESTABLISHED, FIN_WAIT_1 or
//! FIN_WAIT_2 with no out-of-order data held), and the stack's `rcv_write(0, payload)` of
//! it copies nothing. The stack is not told how many packets a segment merged (`t_rcv_segs`
//! counts it once; FreeBSD's `nsegs` has no counterpart), and a packet that crosses a
//! receive-buffer chunk may arrive as two segments. The tunables are read once per batch.
//!
//! ## Stack switch
//!
//! setsockopt(TCP_FUNCTION_BLK) on a connection, or a forced unload of its block,
//! switches it make-before-break, as FreeBSD's tcp_ctloutput_set does:
//!
//! 1. Refused without a stack call: ECONNRESET in TIME_WAIT, or in CLOSED after an error or
//!    close; ENOENT for an unknown or departing block. The block already in use: success,
//!    no call.
//! 2. The new block's `handoff_ok(cx)` (no state yet): its errno goes back to the
//!    application as is. A new connection's first attach does not ask `handoff_ok`.
//! 3. The host stops all the old stack's timers (remembering their deadlines) and gives
//!    the context the new block's counters.
//! 4. The new block's `init(cx, InitMode::Switch, old)`. No timer is armed now
//!    (`timer_remaining` says so for every kind); the old stack still exists and answers
//!    `old.query(cx, &mut q)` through its `chg_query` ([`query`]; no in-tree stack
//!    implements `chg_query`, so a stack cannot count on an answer and should derive its
//!    timers from the connection's state, as plugtcp's engine and FreeBSD's
//!    tcp_default_fb_init do). The tcpcb, the CC and the buffers are the connection's, as
//!    the old stack left them.
//! 5. If `init` fails: whatever it armed is cancelled, the old timers come back with their
//!    old deadlines, the old counters too, the old stack's `switch_failed` runs (its
//!    result ignored) and it keeps the connection; the application gets the errno (EIO for
//!    a panic, which does not cost the connection here). **Changes the failed `init` made
//!    to the tcpcb are not undone**: the host keeps no copy, so `init` should not write to
//!    the tcpcb until it cannot fail.
//! 6. If it succeeds: each standard timer (below `tt::PRIV0`) the new stack armed keeps the
//!    old deadline when that was sooner (so switching more often than one RTO cannot
//!    postpone a retransmission for ever); timers it did not arm stay off; private timers
//!    are never carried over. Then the old stack's `fini(purged = false)` runs with its own
//!    counters and no timer visible; what it arms or stops there is undone afterwards. Then
//!    the host sets the remembered options again on the new stack (`ctloutput`, errors
//!    ignored): the IPPROTO_TCP options a stack accepted through `ctloutput` (TCP_QUICKACK
//!    aside) and those inherited from a listener; the options the host keeps in the tcpcb
//!    need no replay. So `ctloutput` must take an option it already has.
//!
//! A forced unload (`kldunload -f`) switches each user to the default block, then to
//! `base`, and drops it (RST) if both refuse.
//!
//! ## Errors and panics
//!
//! A hook's errno is an answer, not a fault. The host passes it on where someone asked:
//! `ctloutput` to setsockopt/getsockopt, `info` to getsockopt(TCP_INFO), `handoff_ok` and
//! a switch's `init` to setsockopt(TCP_FUNCTION_BLK), a fresh `init` to socket(2)/connect
//! (the connection is not made) or to the handshake (an accepted connection whose `init` or
//! `inherit` fails is freed and the peer gets a RST). It ignores the errno of
//! `do_segment`, `output`, `timer` and `mtu_chg` (nothing is counted; the connection goes
//! on), of `fini` and `switch_failed`, and of the `ctloutput` calls it makes on its own
//! (notifications, replays: ENOPROTOOPT there is fine).
//!
//! A panic is caught by the export wrapper and is a fault: the host counts it against the
//! plugin and, for every call made on a connection's behalf (segments, timers, output,
//! options, TCP_INFO, `mtu_chg`, `inherit`, and CC hooks called during any of them), frees
//! that connection at once: `fini(purged = true)` on the stack that panicked, the CC's
//! `cb_destroy`, timers and buffers released; no RST goes to the peer, and the application
//! call gets ECONNABORTED. A CC hook's panic inside a stack hook is blamed on the CC module,
//! after the stack hook returns. A panic in a switch target's `handoff_ok` or `init` only
//! fails the switch (EIO).
//!
//! ## What the host does by itself
//!
//! A stack author coming from FreeBSD should know that the host changes TCP state on its
//! own in these places (each listed in the tcpcb section too):
//!
//! - **TIME_WAIT** is the host's (FreeBSD's tcp_twcheck, which also runs before any stack
//!   sees the segment): segments for a connection in TIME_WAIT never reach `do_segment`.
//!   The host ignores RSTs, answers any segment with ACK but an exact duplicate ACK with an
//!   ACK of its own (built from the tcpcb), restarts `tt::TWO_MSL` (2 * `msl`) on a
//!   retransmitted FIN, and on a new SYN above `rcv_nxt` cancels the timers, sets CLOSED,
//!   reports `Closed` itself and gives the SYN to the listener. No segment reaches the
//!   stack in TIME_WAIT (timers, `output` and options still do); on `TWO_MSL` it must
//!   close the connection: the host never ends TIME_WAIT on its own otherwise.
//! - **Drops**: tcpdrop(8), an ICMP hard error in SYN_SENT (with `icmp_may_rst`), and a
//!   second ICMP soft error during the handshake once `t_rxtshift` is above 3: the host
//!   sends the RST (if synchronized), cancels the timers, sets CLOSED and `t_softerror`,
//!   without calling the stack. close(2) with SO_LINGER 0 on an established connection
//!   sends the RST and frees the connection (`fini`) with no `output` call.
//! - **Application calls** move `t_state` (connect, shutdown, close) and `snd_up`.
//! - **ICMP "fragmentation needed"** lowers `t_maxseg` and rewinds `snd_nxt` before
//!   `mtu_chg`.
//! - **Listener options** and the SYN cache's agreement are written into a new
//!   connection's tcpcb before its stack exists.
//!
//! Why these stay in the host rather than going through a hook: FreeBSD keeps the same
//! code outside its function blocks, shared by every stack. tcp_usr_connect,
//! tcp_usrclosed and tcp_drop live in tcp_usrreq.c and tcp_subr.c, tcp_twcheck and
//! syncache_socket run before any block is involved, and tcp_mtudisc is common code that
//! ends in the block's `tfb_tcp_mtu_chg`; FreeBSD's `struct tcp_function_block` has no
//! hook for them, and its RACK and BBR stacks rely on them as the base stack does. Keeping
//! them here keeps a block's contract the one FreeBSD authors know, makes the state a
//! connection is in when a stack first sees it the same whichever block it runs on, and
//! lets the host keep its promises (TIME_WAIT's cost, a drop that always drops) even when
//! a plugin misbehaves.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use abi_stable::{
    prefix_type::WithMetadata,
    std_types::{RSlice, RSliceMut, RStr},
    StableAbi,
};

use crate::cc::CcConn;
use crate::errno::{guard, Errno, HookStatus};
use crate::segment::{SegIn, SegOut};
use crate::sockopt::SockOpt;
use crate::tcpcb::{TcpState, Tcpcb};

/// Function block flags ([`TcpFunctionBlock::flags`]), named after FreeBSD's TCP_FUNC_*.
/// The values are plugtcp's own, not FreeBSD's (there BEING_REMOVED is 0x01,
/// OUTPUT_CANDROP 0x02, DEFAULT_OK 0x04): use the constants.
pub mod tcp_func {
    /// The block may be made the system default (`net.inet.tcp.functions_default`; EINVAL
    /// without it). The first block registered with it becomes the default.
    pub const DEFAULT_OK: u32 = 0x0001;
    /// FreeBSD's mark of a block being deregistered (no new users). The host keeps that
    /// state itself (kldstat's "being removed") and clears this bit in a block's flags at
    /// registration.
    pub const BEING_REMOVED: u32 = 0x0002;
    /// FreeBSD's TCP_FUNC_OUTPUT_CANDROP ("tfb_tcp_output may ask tcp_drop"). Neither set
    /// nor read by the host.
    pub const OUTPUT_CANDROP: u32 = 0x0004;
}

/// Per-connection timers the host runs for a stack (FreeBSD TT_*), plus private ones: the
/// `which` of [`HostOps::timer_start`] and of the `timer` hook. The numbering is plugtcp's
/// (a plugin uses these constants). The five standard timers mean the same in every stack
/// (the host relies on it at a stack switch and in TIME_WAIT); see "Timers" in the module
/// docs.
pub mod tt {
    /// TT_REXMT: retransmission timeout (also the SYN's).
    pub const REXMT: u32 = 0;
    /// TT_PERSIST: zero-window probe. The host reads whether it is armed (a drop's RST
    /// then goes at `snd_nxt`, see [`crate::Tcpcb::drop_rst`]).
    pub const PERSIST: u32 = 1;
    /// TT_KEEP: keepalive, and the connection-establishment timeout (keepinit).
    pub const KEEP: u32 = 2;
    /// TT_2MSL: TIME_WAIT's end, and an orphaned FIN_WAIT_2's lifetime. The host arms it
    /// itself in TIME_WAIT (2 * msl) when a retransmitted FIN arrives.
    pub const TWO_MSL: u32 = 3;
    /// TT_DELACK: delayed ACK.
    pub const DELACK: u32 = 4;
    /// First timer a stack may use for its own purposes (RACK's TLP, pacing...): `PRIV0`
    /// to `COUNT - 1`. Private timers are not carried over a stack switch.
    pub const PRIV0: u32 = 5;
    /// Number of timers per connection; a `which` at or above it is ignored.
    pub const COUNT: u32 = 8;
}

/// Events a stack reports to the host (socket wakeups and state changes) with
/// [`HostOps::event`]. The host records them during the call and acts on them after it
/// (after `do_segment`, `timer` and `output`; see "Host operations and buffers" in the
/// module docs). Reporting one twice in a call is the same as once.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Debug, StableAbi)]
pub enum ConnEvent {
    /// The handshake completed (soisconnected): a passive connection goes to the accept
    /// queue (or waits for data under TCP_DEFER_ACCEPT).
    Connected = 0,
    /// New bytes are readable or the peer's FIN arrived (sorwakeup). The host reads
    /// readability from the buffer; it uses the event only to end a TCP_DEFER_ACCEPT wait.
    Readable = 1,
    /// Send-buffer space was freed (sowwakeup). Not acted on by the host today (writability
    /// is read from the buffer).
    Writable = 2,
    /// The connection is closed and may be freed (tcp_close); `t_softerror` says why. A
    /// stack sets `t_state` CLOSED as well (the host treats either as closed).
    Closed = 3,
    /// The connection entered TIME_WAIT (the host may keep a compact record; it does not
    /// today).
    TimeWait = 4,
    /// The peer's urgent pointer moved (`tp.rcv_up`): out-of-band data (SIGURG). The host
    /// then places the urgent byte, the one before `rcv_up`, in the stream.
    Urgent = 5,
}

/// What the host offers a stack. A prefix type so that later ABI versions can append ops.
///
/// Every op takes the opaque `host` handle of [`HostIf`] and acts at once (except `event`,
/// acted on after the call). With a null handle (outside a call, or a connection dropped
/// without the host's `close`) every op does nothing: `output` fails with ENOTCONN, the
/// getters return 0 (`timer_remaining` u64::MAX). Use them through [`HostIf`]'s methods.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostOpsRef)))]
#[sabi(missing_field(panic))]
pub struct HostOps {
    /// Transmit one segment (the host adds IP and TCP headers and copies the payload), or
    /// with TSO several: see "Output and TSO" in the module docs for the limits and
    /// errors. The packets are queued in order before this returns.
    pub output: extern "C" fn(host: *mut c_void, seg: &SegOut) -> HookStatus,
    /// Bytes in the send buffer: from its front (`snd_una`, or `snd_una + 1` while our SYN
    /// is unacknowledged) to the last byte the application wrote.
    pub snd_len: extern "C" fn(host: *mut c_void) -> u32,
    /// Copy send-buffer bytes at `off` into `dst`; returns the count copied.
    pub snd_read: extern "C" fn(host: *mut c_void, off: u32, dst: RSliceMut<'_, u8>) -> u32,
    /// Drop `n` acknowledged bytes from the front of the send buffer (clamped to what it
    /// holds). The host never drops bytes by itself: a stack calls this as `snd_una`
    /// advances over data.
    pub snd_drop: extern "C" fn(host: *mut c_void, n: u32),
    /// Free space in the receive buffer: `rcv_hiwat` less the readable bytes (0 if the
    /// buffer was shrunk below them). Out-of-order bytes the stack stored do not count: this
    /// is the window to advertise from `rcv_nxt`.
    pub rcv_space: extern "C" fn(host: *mut c_void) -> u32,
    /// The receive buffer's size (so_rcv.sb_hiwat).
    pub rcv_hiwat: extern "C" fn(host: *mut c_void) -> u32,
    /// Grow a buffer; `which` is an [`autosize`] constant. RCV and SND auto-size: the host
    /// caps the size at recvbuf_max/sendbuf_max and ignores the request when the
    /// application fixed the size (SO_RCVBUF/SO_SNDBUF). RESERVE_RCV and RESERVE_SND grow it
    /// whatever the application set, capped at kern.ipc.maxsockbuf (FreeBSD's sbreserve in
    /// tcp_mss, which rounds both buffers up to whole segments). Never shrinks; returns the
    /// size in force.
    pub autosize: extern "C" fn(host: *mut c_void, which: u32, size: u32) -> u32,
    /// The send buffer's size (so_snd.sb_hiwat).
    pub snd_hiwat: extern "C" fn(host: *mut c_void) -> u32,
    /// Store bytes `off` bytes past the readable end of the receive buffer (0 = in order,
    /// the byte at `rcv_nxt`); returns the count of leading bytes stored (fewer when they
    /// would pass the buffer's limit). The host does not track which ranges were written:
    /// reassembly bookkeeping is the stack's. Bytes already placed there by LRO are not
    /// copied again.
    pub rcv_write: extern "C" fn(host: *mut c_void, off: u32, data: RSlice<'_, u8>) -> u32,
    /// Make `n` more stored bytes readable by the application (they must have been written
    /// with `rcv_write`; clamped to what was).
    pub rcv_commit: extern "C" fn(host: *mut c_void, n: u32),
    /// Arm timer `which` (a `tt::*`) to fire `delay_ns` from now; re-arming replaces.
    pub timer_start: extern "C" fn(host: *mut c_void, which: u32, delay_ns: u64),
    /// Cancel timer `which` (nothing if it is not armed).
    pub timer_stop: extern "C" fn(host: *mut c_void, which: u32),
    /// Nanoseconds until timer `which` fires, or u64::MAX when it is not armed.
    pub timer_remaining: extern "C" fn(host: *mut c_void, which: u32) -> u64,
    /// The host clock, in nanoseconds. Constant during a call.
    pub now: extern "C" fn(host: *mut c_void) -> u64,
    /// Report an event ([`ConnEvent`]); the host acts on it after the call.
    #[sabi(last_prefix_field)]
    pub event: extern "C" fn(host: *mut c_void, ev: ConnEvent),
    /// Whether the current `do_segment` is part of a receive batch: the host hands the
    /// connection several segments that arrived together (one link poll, one recvmmsg, an
    /// LRO flush) and calls `output` once at the batch's end, so the stack may leave its
    /// output (the ACK) to that call. False in every other call.
    pub input_batch: extern "C" fn(host: *mut c_void) -> bool,
}

/// `which` values of [`HostOps::autosize`].
pub mod autosize {
    /// Receive-buffer auto-sizing (FreeBSD tcp_autorcvbuf): capped at `recvbuf_max`, and
    /// ignored when `recvbuf_auto` is 0 or the application set SO_RCVBUF.
    pub const RCV: u32 = 0;
    /// Send-buffer auto-sizing (tcp_output's sbreserve): capped at `sendbuf_max`, ignored
    /// when `sendbuf_auto` is 0 or the application set SO_SNDBUF. Any other `which` than
    /// these four acts as this one.
    pub const SND: u32 = 1;
    /// Grow the receive buffer whatever the application set, up to kern.ipc.maxsockbuf
    /// (FreeBSD tcp_mss's sbreserve).
    pub const RESERVE_RCV: u32 = 2;
    /// Grow the send buffer whatever the application set, up to kern.ipc.maxsockbuf.
    pub const RESERVE_SND: u32 = 3;
}

/// The host side of one stack call: its ops and the opaque handle they take.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostIf {
    /// The host's operations.
    pub ops: HostOpsRef,
    /// The host's handle for this connection and call (null outside a call).
    pub host: *mut c_void,
}

impl HostIf {
    /// [`HostOps::output`]; a host failure comes back as its errno.
    #[inline]
    pub fn output(&self, seg: &SegOut) -> Result<(), Errno> {
        match (self.ops.output())(self.host, seg).into_result() {
            Ok(()) => Ok(()),
            Err(e) => Err(e.errno()),
        }
    }
    /// [`HostOps::snd_len`].
    #[inline]
    pub fn snd_len(&self) -> u32 {
        (self.ops.snd_len())(self.host)
    }
    /// [`HostOps::snd_read`].
    #[inline]
    pub fn snd_read(&self, off: u32, dst: &mut [u8]) -> u32 {
        (self.ops.snd_read())(self.host, off, dst.into())
    }
    /// [`HostOps::snd_drop`].
    #[inline]
    pub fn snd_drop(&self, n: u32) {
        (self.ops.snd_drop())(self.host, n)
    }
    /// [`HostOps::rcv_space`].
    #[inline]
    pub fn rcv_space(&self) -> u32 {
        (self.ops.rcv_space())(self.host)
    }
    /// [`HostOps::rcv_hiwat`].
    #[inline]
    pub fn rcv_hiwat(&self) -> u32 {
        (self.ops.rcv_hiwat())(self.host)
    }
    /// [`HostOps::autosize`].
    #[inline]
    pub fn autosize(&self, which: u32, size: u32) -> u32 {
        (self.ops.autosize())(self.host, which, size)
    }
    /// [`HostOps::snd_hiwat`].
    #[inline]
    pub fn snd_hiwat(&self) -> u32 {
        (self.ops.snd_hiwat())(self.host)
    }
    /// [`HostOps::rcv_write`].
    #[inline]
    pub fn rcv_write(&self, off: u32, data: &[u8]) -> u32 {
        (self.ops.rcv_write())(self.host, off, data.into())
    }
    /// [`HostOps::rcv_commit`].
    #[inline]
    pub fn rcv_commit(&self, n: u32) {
        (self.ops.rcv_commit())(self.host, n)
    }
    /// [`HostOps::timer_start`]: timer `which` fires `delay_ns` nanoseconds from `now()`.
    #[inline]
    pub fn timer_start(&self, which: u32, delay_ns: u64) {
        (self.ops.timer_start())(self.host, which, delay_ns)
    }
    /// [`HostOps::timer_stop`].
    #[inline]
    pub fn timer_stop(&self, which: u32) {
        (self.ops.timer_stop())(self.host, which)
    }
    /// [`HostOps::timer_remaining`]: nanoseconds left, `None` when not armed (inside the
    /// `timer` hook for `which` itself, too: the host forgets a timer before delivering it).
    #[inline]
    pub fn timer_remaining(&self, which: u32) -> Option<u64> {
        match (self.ops.timer_remaining())(self.host, which) {
            u64::MAX => None,
            r => Some(r),
        }
    }
    /// [`HostOps::now`]: the host clock, nanoseconds.
    #[inline]
    pub fn now(&self) -> u64 {
        (self.ops.now())(self.host)
    }
    /// [`HostOps::input_batch`]: `output` follows at the end of this receive batch.
    #[inline]
    pub fn input_batch(&self) -> bool {
        (self.ops.input_batch())(self.host)
    }
    /// [`HostOps::event`].
    #[inline]
    pub fn event(&self, ev: ConnEvent) {
        (self.ops.event())(self.host, ev)
    }
}

/// The `net.inet.tcp.*` values a stack reads, copied by the host from its sysctl tree. Times
/// in milliseconds as the sysctls give them (the `rack_*` ones say otherwise where they
/// differ). The host refreshes them when a sysctl changes (once per receive batch at most);
/// a stack reads them through [`StackCtx::tun`] during a call and must not keep the
/// reference. Negative sysctl values read as 0.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct StackTunables {
    /// `mssdflt`: the MSS assumed for an IPv4 peer that sends none, bytes.
    pub mssdflt: u32,
    /// `v6mssdflt`: the same for IPv6, bytes.
    pub v6mssdflt: u32,
    /// `minmss`: the smallest MSS accepted, bytes.
    pub minmss: u32,
    /// `rfc1323`: 0 none, 1 window scaling and timestamps, 2 scaling only, 3 timestamps
    /// only (applied by the host when it opens connections).
    pub rfc1323: u32,
    /// `sack.enable`: offer and accept SACK (0/1).
    pub sack_enable: u32,
    /// `sack.maxholes`: most holes a SACK scoreboard tracks per connection.
    pub sack_maxholes: u32,
    /// `delayed_ack`: delay ACKs (0/1).
    pub delayed_ack: u32,
    /// `delacktime`: the delayed-ACK timeout, ms.
    pub delacktime: u32,
    /// `rexmit_initial`: the RTO before any RTT sample, ms.
    pub rexmit_initial: u32,
    /// `rexmit_min`: the smallest RTO, ms.
    pub rexmit_min: u32,
    /// `rexmit_slop`: added to every RTO (RFC 6298's G), ms.
    pub rexmit_slop: u32,
    /// `persmin`: the shortest persist interval, ms.
    pub persmin: u32,
    /// `persmax`: the longest persist interval, ms.
    pub persmax: u32,
    /// `keepinit`: connection-establishment timeout, ms (when `t_keepinit` is 0).
    pub keepinit: u32,
    /// `keepidle`: idle time before keepalive probes, ms (when `t_keepidle` is 0).
    pub keepidle: u32,
    /// `keepintvl`: time between keepalive probes, ms (when `t_keepintvl` is 0).
    pub keepintvl: u32,
    /// `keepcnt`: unanswered probes before a drop (when `t_keepcnt` is 0).
    pub keepcnt: u32,
    /// `always_keepalive`: keepalives on every connection, SO_KEEPALIVE or not (0/1).
    pub always_keepalive: u32,
    /// `msl`: maximum segment lifetime, ms (TIME_WAIT lasts twice this).
    pub msl: u32,
    /// `nolocaltimewait`: no TIME_WAIT when the peer is this host (`tf2::LOCAL_PEER`) (0/1).
    pub nolocaltimewait: u32,
    /// `initcwnd_segments`: the initial window in segments (0: RFC 3390's).
    pub initcwnd_segments: u32,
    /// `ecn.enable`: 0 off, 1 request and accept ECN, 2 accept only.
    pub ecn_enable: u32,
    /// `ecn.maxretries`: SYN retransmissions after which our SYN stops asking for ECN.
    pub ecn_maxretries: u32,
    /// `do_prr`: RFC 6937 proportional rate reduction in recovery (0/1).
    pub do_prr: u32,
    /// `do_prr_conservative`: PRR's conservative bound (0/1).
    pub do_prr_conservative: u32,
    /// `do_lrd`: lost retransmission detection (0/1).
    pub do_lrd: u32,
    /// `insecure_rst`: accept any in-window RST, not only one at exactly the expected
    /// sequence number (RFC 5961 off) (0/1).
    pub insecure_rst: u32,
    /// `insecure_syn`: an in-window SYN resets the connection instead of drawing a
    /// challenge ACK (0/1).
    pub insecure_syn: u32,
    /// `drop_synfin`: drop SYN+FIN segments (0/1).
    pub drop_synfin: u32,
    /// `tolerate_missing_ts`: accept segments without timestamps once they were agreed
    /// (0/1).
    pub tolerate_missing_ts: u32,
    /// `abc_l_var`: RFC 3465's L, segments per ACK in slow start.
    pub abc_l_var: u32,
    /// `recvbuf_auto`: receive-buffer auto-sizing (0/1).
    pub recvbuf_auto: u32,
    /// `recvbuf_max`: auto-sizing's receive-buffer ceiling, bytes.
    pub recvbuf_max: u32,
    /// `sendbuf_auto`: send-buffer auto-sizing (0/1).
    pub sendbuf_auto: u32,
    /// `sendbuf_inc`: send-buffer auto-sizing step, bytes.
    pub sendbuf_inc: u32,
    /// `sendbuf_max`: auto-sizing's send-buffer ceiling, bytes.
    pub sendbuf_max: u32,
    /// `ack_war_timewindow`: the RFC 5961 challenge-ACK throttling window, ms.
    pub ack_war_timewindow: u32,
    /// `ack_war_cnt`: challenge ACKs allowed per window (0: no limit).
    pub ack_war_cnt: u32,
    /// `finwait2_timeout`: an orphaned FIN_WAIT_2's lifetime with
    /// `fast_finwait2_recycle`, ms.
    pub finwait2_timeout: u32,
    /// `fast_finwait2_recycle`: recycle orphaned FIN_WAIT_2 connections after
    /// `finwait2_timeout` (0/1).
    pub fast_finwait2_recycle: u32,
    /// `net.inet.tcp.rack.*` (FreeBSD's rack stack): the reordering window is min_rtt >>
    /// reorder_thresh; reordering seen longer than reorder_fade (us) ago is forgotten;
    /// pktdelay (ms) is added to RACK's loss timer; at most tlp_limit tail loss probes in a
    /// row; the probe timeout is at least tlpminto (us).
    pub rack_reorder_thresh: u32,
    /// `rack.reorder_fade`, microseconds (see `rack_reorder_thresh`).
    pub rack_reorder_fade: u32,
    /// `rack.pktdelay`, milliseconds (see `rack_reorder_thresh`).
    pub rack_pktdelay: u32,
    /// `rack.tlp.limit`: tail loss probes in a row (0: no TLP).
    pub rack_tlp_limit: u32,
    /// `rack.timers.tlpminto`: the shortest probe timeout, microseconds.
    pub rack_tlpminto: u32,
    /// `pmtud_blackhole_detection`: 0 off, 1 IPv4 and IPv6, 2 IPv4 only, 3 IPv6 only
    /// (tcp(4)): full-sized segments timing out make the stack try a smaller MSS.
    pub pmtud_blackhole_detection: u32,
    /// `pmtud_blackhole_mss`: the MSS to try over IPv4.
    pub pmtud_blackhole_mss: u32,
    /// `v6pmtud_blackhole_mss`: the MSS to try over IPv6.
    pub v6pmtud_blackhole_mss: u32,
    /// `reass.maxqueuelen`: out-of-order segments (ranges) a connection holds at most; the
    /// lower of this and the receive buffer in segments (0: that alone).
    pub reass_maxqueuelen: u32,
}

impl Default for StackTunables {
    fn default() -> Self {
        StackTunables::FREEBSD
    }
}

impl StackTunables {
    /// FreeBSD's defaults (tcp(4)).
    pub const FREEBSD: StackTunables = StackTunables {
        mssdflt: 536,
        v6mssdflt: 1220,
        minmss: 216,
        rfc1323: 1,
        sack_enable: 1,
        sack_maxholes: 128,
        delayed_ack: 1,
        delacktime: 40,
        rexmit_initial: 1000,
        rexmit_min: 30,
        rexmit_slop: 200,
        persmin: 5000,
        persmax: 60000,
        keepinit: 75000,
        keepidle: 7_200_000,
        keepintvl: 75000,
        keepcnt: 8,
        always_keepalive: 1,
        msl: 30000,
        nolocaltimewait: 1,
        initcwnd_segments: 10,
        ecn_enable: 2,
        ecn_maxretries: 1,
        do_prr: 1,
        do_prr_conservative: 0,
        do_lrd: 0,
        insecure_rst: 0,
        insecure_syn: 0,
        drop_synfin: 1,
        tolerate_missing_ts: 1,
        abc_l_var: 2,
        recvbuf_auto: 1,
        recvbuf_max: 2 * 1024 * 1024,
        sendbuf_auto: 1,
        sendbuf_inc: 8192,
        sendbuf_max: 2 * 1024 * 1024,
        ack_war_timewindow: 1000,
        ack_war_cnt: 5,
        finwait2_timeout: 60000,
        fast_finwait2_recycle: 0,
        rack_reorder_thresh: 2,
        rack_reorder_fade: 60_000_000,
        rack_pktdelay: 1,
        rack_tlp_limit: 2,
        rack_tlpminto: 10_000,
        pmtud_blackhole_detection: 0,
        pmtud_blackhole_mss: 1200,
        v6pmtud_blackhole_mss: 1220,
        reass_maxqueuelen: 100,
    };
}

/// Everything a stack hook works on for one connection: the shared control block, the
/// connection's CC, the host interface and the stack's counters. The host keeps it inline in
/// the connection slot, so a stack switch hands it over untouched.
#[repr(C)]
#[derive(StableAbi)]
pub struct StackCtx {
    /// The shared control block (see "The tcpcb" in the module docs for what the host
    /// reads and writes).
    pub tp: Tcpcb,
    /// The connection's CC module and cc_var: call it through the [`CcConn`] methods.
    /// The host attaches and replaces the module; a stack never does.
    pub cc: CcConn,
    /// The host interface for this call.
    pub host: HostIf,
    /// The stack's counters, in the order of [`TcpFunctionBlock::counters`]; host-owned.
    pub counters: RSlice<'static, AtomicUsize>,
    /// The host's current tunables; valid for the duration of a hook call (see [`Self::tun`]).
    pub tunables: *const StackTunables,
}

impl StackCtx {
    /// The tunables in force for this call (FreeBSD defaults if the host gave none).
    #[inline]
    pub fn tun(&self) -> &StackTunables {
        // SAFETY: the host points `tunables` at a StackTunables it keeps alive for the whole
        // hook call, or leaves it null.
        unsafe { self.tunables.as_ref() }.unwrap_or(&StackTunables::FREEBSD)
    }

    /// Adds `n` to counter `idx` of this stack (an index into [`TcpStack::COUNTERS`];
    /// nothing if out of range). These are block-wide totals (FreeBSD tcpstat); per-connection
    /// counts belong in the tcpcb.
    #[inline]
    pub fn count(&self, idx: usize, n: usize) {
        if let Some(c) = self.counters.get(idx) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Why `init` is called.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Debug, StableAbi)]
pub enum InitMode {
    /// A new connection starts on this stack: a socket in CLOSED (an active open, or a
    /// socket that will become a listener: listen(2) then frees it with `fini(purged)`), or
    /// a connection the SYN cache made, in SYN_RECEIVED. The old-stack handle is
    /// [`OldStack::NONE`]; no timer is armed; `handoff_ok` was not asked.
    Fresh = 0,
    /// A live connection is switched to this stack (make-before-break: the old stack still
    /// exists and can be queried through [`OldStack`]). No timer is armed: the host stopped
    /// the old stack's. See "Stack switch" in the module docs.
    Switch = 1,
}

/// Query kinds for `chg_query` (FreeBSD TCP_QUERY_*): what a stack being switched in may
/// ask the old one ([`ChgQuery::req`]). No in-tree stack answers any of them (the engine
/// has no `chg_query`), so asking is only useful with third-party stacks; an unanswered
/// query leaves `answered` 0.
pub mod query {
    /// Describe the send-map entry that contains `seq` (or the first after it).
    pub const SENDMAP: u32 = 1;
    /// Which timers the old stack had running (bitmask of `1 << tt::*`).
    pub const TIMERS_UP: u32 = 2;
    /// RACK's reordering and time state.
    pub const RACK_TIMES: u32 = 3;
}

/// A `chg_query` request and its answer (FreeBSD `struct tcp_query_resp`).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ChgQuery {
    /// The question: a [`query`] constant (or a stack pair's private one).
    pub req: u32,
    /// Its argument (for `query::SENDMAP`, the sequence number).
    pub req_param: u32,
    /// Set by the answering stack: 1 if it answered.
    pub answered: u32,
    /// `SENDMAP`: first sequence number of the entry.
    pub sendmap_start: u32,
    /// `SENDMAP`: the sequence number after its last byte.
    pub sendmap_end: u32,
    /// `SENDMAP`: how many times it was sent.
    pub sendmap_send_cnt: u32,
    /// `SENDMAP`: the answering stack's flags for it (FreeBSD's rack sendmap flags; no
    /// in-tree stack defines any).
    pub sendmap_flags: u32,
    /// `SENDMAP`: when it was last sent, nanoseconds.
    pub sendmap_time_ns: u64,
    /// `TIMERS_UP`: bitmask of `1 << tt::*` of the timers the old stack had armed (the host
    /// has stopped them by the time the query runs: it is the old stack's own record).
    pub timers_up: u32,
    /// `RACK_TIMES`: when reordering was last seen (FreeBSD's rack_reorder_ts; no in-tree
    /// stack fills it, so the unit is for the two stacks to agree on).
    pub rack_reorder_ts: u64,
    /// `RACK_TIMES`: D-SACKs received.
    pub rack_num_dsacks: u32,
    /// `RACK_TIMES`: RACK's RTT, microseconds.
    pub rack_rtt_us: u32,
}

/// Handle on the stack being switched away from, for `init` in switch mode.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct OldStack {
    /// The old stack's private state (opaque; only its own `chg_query` may use it).
    pub state: *mut c_void,
    /// The old block's `chg_query` hook, if it has one.
    pub chg_query: Option<extern "C" fn(*mut c_void, &StackCtx, &mut ChgQuery) -> HookStatus>,
}

impl OldStack {
    /// No old stack ([`InitMode::Fresh`]).
    pub const NONE: OldStack = OldStack {
        state: std::ptr::null_mut(),
        chg_query: None,
    };

    /// Ask the old stack; `Ok(false)` when it has no answer (or no `chg_query` at all). Its
    /// errno comes back as `Err` (a panic as ECONNABORTED, not counted as a fault); what to
    /// do then is the asking stack's choice. Only valid during `init` in switch mode.
    pub fn query(&self, cx: &StackCtx, q: &mut ChgQuery) -> Result<bool, Errno> {
        let Some(h) = self.chg_query else {
            return Ok(false);
        };
        h(self.state, cx, q).into_result().map_err(|e| e.errno())?;
        Ok(q.answered != 0)
    }
}

/// FreeBSD `struct tcp_info` (netinet/tcp.h), the fields a stack fills through its `info`
/// hook, plus plugtcp's own (`tcpi_rxtshift`, `tcpi_flight`, the byte counts). What
/// getsockopt(TCP_INFO) returns is [`TcpInfo::to_freebsd`]: FreeBSD's 240-byte layout.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// `t_state` (FreeBSD's TCPS_* numbering).
    pub tcpi_state: u8,
    /// `tcpi_opt::*` bits: the options in use.
    pub tcpi_options: u8,
    /// The peer's window scale shift (0 unless scaling is in use).
    pub tcpi_snd_wscale: u8,
    /// Our window scale shift (0 unless scaling is in use).
    pub tcpi_rcv_wscale: u8,
    /// Microseconds, as FreeBSD reports them (rto, last_data_recv, rtt, rttvar).
    pub tcpi_rto: u32,
    /// MSS for sending, bytes.
    pub tcpi_snd_mss: u32,
    /// MSS for receiving, bytes (`from_tcpcb` reports `t_maxseg` for both).
    pub tcpi_rcv_mss: u32,
    /// Time since the last segment was received, microseconds (0 from `from_tcpcb`; the
    /// engine fills it from `t_rcvtime`).
    pub tcpi_last_data_recv: u32,
    /// Smoothed RTT, microseconds (`t_srtt`).
    pub tcpi_rtt: u32,
    /// RTT variation, microseconds (`t_rttvar`).
    pub tcpi_rttvar: u32,
    /// `snd_ssthresh`, bytes.
    pub tcpi_snd_ssthresh: u32,
    /// `snd_cwnd`, bytes.
    pub tcpi_snd_cwnd: u32,
    /// The receive window, bytes (`from_tcpcb` copies `rcv_wnd`, which plugtcp's stacks do
    /// not maintain; the engine's `info` reports `HostOps::rcv_space`).
    pub tcpi_rcv_space: u32,
    /// `snd_wnd`, bytes.
    pub tcpi_snd_wnd: u32,
    /// `snd_nxt`.
    pub tcpi_snd_nxt: u32,
    /// `snd_una`.
    pub tcpi_snd_una: u32,
    /// `snd_max`.
    pub tcpi_snd_max: u32,
    /// `rcv_nxt`.
    pub tcpi_rcv_nxt: u32,
    /// `t_sndrexmitpack`, saturated at u32::MAX.
    pub tcpi_snd_rexmitpack: u32,
    /// `t_rcvoopack`, saturated.
    pub tcpi_rcv_ooopack: u32,
    /// `t_sndzerowin`, saturated.
    pub tcpi_snd_zerowin: u32,
    /// `t_rxtshift` (plugtcp's own; not in FreeBSD's layout).
    pub tcpi_rxtshift: u32,
    /// `t_dupacks`.
    pub tcpi_dupacks: u32,
    /// Bytes in flight, `snd_max - snd_una` (plugtcp's own).
    pub tcpi_flight: u32,
    /// `t_snd_bytes` (plugtcp's own).
    pub tcpi_snd_bytes: u64,
    /// `t_rcv_bytes` (plugtcp's own).
    pub tcpi_rcv_bytes: u64,
    /// `t_rexmit_bytes` (plugtcp's own).
    pub tcpi_rexmit_bytes: u64,
    /// Accurate ECN counters: FreeBSD fills them only with AccECN, which plugtcp does not
    /// negotiate, so they stay 0 unless a stack does.
    pub tcpi_delivered_ce: u32,
    /// CE marks received (AccECN; 0, see `tcpi_delivered_ce`).
    pub tcpi_received_ce: u32,
    /// Tail loss probes sent (`t_sndtlppack`).
    pub tcpi_total_tlp: u32,
    /// Bytes sent in tail loss probes (`t_sndtlpbyte`).
    pub tcpi_total_tlp_bytes: u64,
    /// SACK blocks the receiver holds to report (FreeBSD rcv_numsacks).
    pub tcpi_rcv_numsacks: u32,
    /// The right edge of the window last advertised (FreeBSD rcv_adv, a sequence number).
    pub tcpi_rcv_adv: u32,
}

/// TCP_INFO `tcpi_options` bits (FreeBSD TCPI_OPT_*).
pub mod tcpi_opt {
    /// TCPI_OPT_TIMESTAMPS: timestamps in use.
    pub const TIMESTAMPS: u8 = 0x01;
    /// TCPI_OPT_SACK: SACK agreed.
    pub const SACK: u8 = 0x02;
    /// TCPI_OPT_WSCALE: window scaling in use.
    pub const WSCALE: u8 = 0x04;
    /// TCPI_OPT_ECN: ECN agreed.
    pub const ECN: u8 = 0x08;
    /// TCPI_OPT_TOE: TCP offload engine (never set by `from_tcpcb`).
    pub const TOE: u8 = 0x10;
    /// TCPI_OPT_TFO: TCP Fast Open (never set by `from_tcpcb`).
    pub const TFO: u8 = 0x20;
    /// TCPI_OPT_ACE: AccECN (never set by `from_tcpcb`).
    pub const ACE: u8 = 0x40;
}

/// `sizeof(struct tcp_info)` on FreeBSD (amd64 and arm64).
pub const TCP_INFO_LEN: usize = 240;

/// Byte offsets of the fields of FreeBSD's `struct tcp_info` (FreeBSD 14 netinet/tcp.h);
/// the `__tcpi_*` fields FreeBSD leaves unfilled are zero.
pub mod tcpi_off {
    /// `u_int8_t tcpi_state`.
    pub const STATE: usize = 0;
    /// `u_int8_t tcpi_options`.
    pub const OPTIONS: usize = 5;
    /// `tcpi_snd_wscale:4, tcpi_rcv_wscale:4`: one byte, send shift in the first bitfield.
    pub const WSCALE: usize = 6;
    /// `u_int32_t tcpi_rto` (us).
    pub const RTO: usize = 8;
    /// `u_int32_t tcpi_snd_mss`.
    pub const SND_MSS: usize = 16;
    /// `u_int32_t tcpi_rcv_mss`.
    pub const RCV_MSS: usize = 20;
    /// `u_int32_t tcpi_last_data_recv` (us).
    pub const LAST_DATA_RECV: usize = 52;
    /// `u_int32_t tcpi_rtt` (us).
    pub const RTT: usize = 68;
    /// `u_int32_t tcpi_rttvar` (us).
    pub const RTTVAR: usize = 72;
    /// `u_int32_t tcpi_snd_ssthresh`.
    pub const SND_SSTHRESH: usize = 76;
    /// `u_int32_t tcpi_snd_cwnd`.
    pub const SND_CWND: usize = 80;
    /// `u_int32_t tcpi_rcv_space`.
    pub const RCV_SPACE: usize = 96;
    /// `u_int32_t tcpi_snd_wnd`.
    pub const SND_WND: usize = 100;
    /// `u_int32_t tcpi_snd_bwnd` (left 0).
    pub const SND_BWND: usize = 104;
    /// `u_int32_t tcpi_snd_nxt`.
    pub const SND_NXT: usize = 108;
    /// `u_int32_t tcpi_rcv_nxt`.
    pub const RCV_NXT: usize = 112;
    /// `u_int32_t tcpi_toe_tid` (left 0).
    pub const TOE_TID: usize = 116;
    /// `u_int32_t tcpi_snd_rexmitpack`.
    pub const SND_REXMITPACK: usize = 120;
    /// `u_int32_t tcpi_rcv_ooopack`.
    pub const RCV_OOOPACK: usize = 124;
    /// `u_int32_t tcpi_snd_zerowin`.
    pub const SND_ZEROWIN: usize = 128;
    /// `u_int32_t tcpi_delivered_ce`.
    pub const DELIVERED_CE: usize = 132;
    /// `u_int32_t tcpi_received_ce`.
    pub const RECEIVED_CE: usize = 136;
    /// `u_int32_t tcpi_total_tlp`.
    pub const TOTAL_TLP: usize = 164;
    /// `u_int64_t tcpi_total_tlp_bytes`.
    pub const TOTAL_TLP_BYTES: usize = 168;
    /// `u_int32_t tcpi_snd_una`.
    pub const SND_UNA: usize = 176;
    /// `u_int32_t tcpi_snd_max`.
    pub const SND_MAX: usize = 180;
    /// `u_int32_t tcpi_rcv_numsacks`.
    pub const RCV_NUMSACKS: usize = 184;
    /// `u_int32_t tcpi_rcv_adv`.
    pub const RCV_ADV: usize = 188;
    /// `u_int32_t tcpi_dupacks`.
    pub const DUPACKS: usize = 192;
}

impl TcpInfo {
    /// The fields every stack reports the same way, straight from the control block.
    pub fn from_tcpcb(tp: &Tcpcb) -> Self {
        use crate::tcpcb::{tf, tf2};
        let mut o = 0;
        if tp.t_flags & (tf::REQ_TSTMP | tf::RCVD_TSTMP) == tf::REQ_TSTMP | tf::RCVD_TSTMP {
            o |= tcpi_opt::TIMESTAMPS;
        }
        if tp.t_flags & tf::SACK_PERMIT != 0 {
            o |= tcpi_opt::SACK;
        }
        let scaled =
            tp.t_flags & (tf::REQ_SCALE | tf::RCVD_SCALE) == tf::REQ_SCALE | tf::RCVD_SCALE;
        if scaled {
            o |= tcpi_opt::WSCALE;
        }
        if tp.t_flags2 & tf2::ECN_PERMIT != 0 {
            o |= tcpi_opt::ECN;
        }
        // Counters saturate where FreeBSD's 32-bit fields would wrap.
        let c32 = |v: u64| v.min(u32::MAX as u64) as u32;
        TcpInfo {
            tcpi_state: tp.t_state as u8,
            tcpi_options: o,
            // FreeBSD reports the shifts only when scaling is in use.
            tcpi_snd_wscale: if scaled { tp.snd_scale } else { 0 },
            tcpi_rcv_wscale: if scaled { tp.rcv_scale } else { 0 },
            tcpi_rto: tp.t_rxtcur,
            tcpi_snd_mss: tp.t_maxseg,
            tcpi_rcv_mss: tp.t_maxseg,
            tcpi_last_data_recv: 0,
            tcpi_rtt: tp.t_srtt,
            tcpi_rttvar: tp.t_rttvar,
            tcpi_snd_ssthresh: tp.snd_ssthresh,
            tcpi_snd_cwnd: tp.snd_cwnd,
            tcpi_rcv_space: tp.rcv_wnd,
            tcpi_snd_wnd: tp.snd_wnd,
            tcpi_snd_nxt: tp.snd_nxt,
            tcpi_snd_una: tp.snd_una,
            tcpi_snd_max: tp.snd_max,
            tcpi_rcv_nxt: tp.rcv_nxt,
            tcpi_snd_rexmitpack: c32(tp.t_sndrexmitpack),
            tcpi_rcv_ooopack: c32(tp.t_rcvoopack),
            tcpi_snd_zerowin: c32(tp.t_sndzerowin),
            tcpi_rxtshift: tp.t_rxtshift,
            tcpi_dupacks: tp.t_dupacks,
            tcpi_flight: tp.flight_size(),
            tcpi_snd_bytes: tp.t_snd_bytes,
            tcpi_rcv_bytes: tp.t_rcv_bytes,
            tcpi_rexmit_bytes: tp.t_rexmit_bytes,
            tcpi_delivered_ce: 0,
            tcpi_received_ce: 0,
            tcpi_total_tlp: tp.t_sndtlppack,
            tcpi_total_tlp_bytes: tp.t_sndtlpbyte,
            tcpi_rcv_numsacks: 0,
            tcpi_rcv_adv: tp.rcv_adv,
        }
    }

    /// The bytes of FreeBSD's `struct tcp_info` (native byte order, [`TCP_INFO_LEN`] long),
    /// what getsockopt(TCP_INFO) copies out; plugtcp's own fields are not in it.
    pub fn to_freebsd(&self) -> [u8; TCP_INFO_LEN] {
        let mut b = [0u8; TCP_INFO_LEN];
        let mut put = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        use tcpi_off as o;
        put(o::RTO, self.tcpi_rto);
        put(o::SND_MSS, self.tcpi_snd_mss);
        put(o::RCV_MSS, self.tcpi_rcv_mss);
        put(o::LAST_DATA_RECV, self.tcpi_last_data_recv);
        put(o::RTT, self.tcpi_rtt);
        put(o::RTTVAR, self.tcpi_rttvar);
        put(o::SND_SSTHRESH, self.tcpi_snd_ssthresh);
        put(o::SND_CWND, self.tcpi_snd_cwnd);
        put(o::RCV_SPACE, self.tcpi_rcv_space);
        put(o::SND_WND, self.tcpi_snd_wnd);
        put(o::SND_NXT, self.tcpi_snd_nxt);
        put(o::RCV_NXT, self.tcpi_rcv_nxt);
        put(o::SND_REXMITPACK, self.tcpi_snd_rexmitpack);
        put(o::RCV_OOOPACK, self.tcpi_rcv_ooopack);
        put(o::SND_ZEROWIN, self.tcpi_snd_zerowin);
        put(o::DELIVERED_CE, self.tcpi_delivered_ce);
        put(o::RECEIVED_CE, self.tcpi_received_ce);
        put(o::TOTAL_TLP, self.tcpi_total_tlp);
        put(o::SND_UNA, self.tcpi_snd_una);
        put(o::SND_MAX, self.tcpi_snd_max);
        put(o::RCV_NUMSACKS, self.tcpi_rcv_numsacks);
        put(o::RCV_ADV, self.tcpi_rcv_adv);
        put(o::DUPACKS, self.tcpi_dupacks);
        b[o::TOTAL_TLP_BYTES..o::TOTAL_TLP_BYTES + 8]
            .copy_from_slice(&self.tcpi_total_tlp_bytes.to_ne_bytes());
        b[o::STATE] = self.tcpi_state;
        b[o::OPTIONS] = self.tcpi_options;
        // C bitfields fill a byte from its least significant bit on little-endian ABIs and
        // from its most significant bit on big-endian ones.
        let (snd, rcv) = (self.tcpi_snd_wscale & 0xf, self.tcpi_rcv_wscale & 0xf);
        b[o::WSCALE] = if cfg!(target_endian = "little") {
            snd | rcv << 4
        } else {
            snd << 4 | rcv
        };
        b
    }
}

/// TCP_STATS version this host writes ([`TcpStats::tcps_version`]).
pub const TCP_STATS_VERSION: u32 = 1;

/// What getsockopt(TCP_STATS) returns: plugtcp's own fixed structure of one connection's
/// statistics (FreeBSD's TCP_STATS is a stats(3) blob of VOI histograms, which needs
/// libstats to read; this is a plain C struct of counters instead). Native byte order,
/// `#[repr(C)]`, every counter 64 bits and counted since the connection began, through
/// stack switches. New fields are only ever appended, with `tcps_len` growing.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TcpStats {
    /// [`TCP_STATS_VERSION`].
    pub tcps_version: u32,
    /// `size_of::<TcpStats>()`: how many bytes of this structure the host filled.
    pub tcps_len: u32,
    /// Bytes of new data sent (first transmissions only).
    pub tcps_snd_bytes: u64,
    /// Bytes of data received in order (delivered to the receive buffer).
    pub tcps_rcv_bytes: u64,
    /// Segments sent (a TSO descriptor counts as the packets it becomes) and received.
    pub tcps_snd_segs: u64,
    /// Segments received (an LRO aggregate counts once: see `Tcpcb::t_rcv_segs`).
    pub tcps_rcv_segs: u64,
    /// Retransmitted segments and bytes.
    pub tcps_snd_rexmitpack: u64,
    /// Retransmitted bytes.
    pub tcps_snd_rexmitbytes: u64,
    /// Retransmission timeouts.
    pub tcps_rexmttimeo: u64,
    /// Duplicate ACKs received.
    pub tcps_rcv_dupack: u64,
    /// Loss recovery episodes entered on duplicate ACKs, SACK or RACK (FreeBSD's
    /// sack_recovery_episode).
    pub tcps_sack_recovery_episode: u64,
    /// Tail loss probes sent and their bytes.
    pub tcps_tlp_probes: u64,
    /// Bytes sent in tail loss probes.
    pub tcps_tlp_bytes: u64,
    /// Retransmissions found lost again (lost retransmission detection).
    pub tcps_lost_rexmit: u64,
    /// D-SACK blocks received and the bytes they reported: spurious retransmissions.
    pub tcps_dsack_pack: u64,
    /// Bytes D-SACK blocks reported.
    pub tcps_dsack_bytes: u64,
    /// Out-of-order segments received.
    pub tcps_rcv_ooopack: u64,
    /// Zero windows advertised to the peer.
    pub tcps_snd_zerowin: u64,
    /// Congestion window reductions on ECN-Echo.
    pub tcps_ecn_reductions: u64,
    /// Zero-window probes sent (persist timer expirations).
    pub tcps_persisttimeo: u64,
    /// Keepalive probes sent.
    pub tcps_keepprobe: u64,
}

/// `size_of::<TcpStats>()`.
pub const TCP_STATS_LEN: usize = std::mem::size_of::<TcpStats>();
// `to_bytes` writes the header and 19 counters, which must be the whole structure.
const _: () = assert!(TCP_STATS_LEN == 8 + 19 * 8);

impl TcpStats {
    /// The statistics from the tcpcb's counters (what the host answers TCP_STATS with; no
    /// stack hook is involved, so a stack that wants its counts there keeps them in the
    /// tcpcb).
    pub fn from_tcpcb(tp: &Tcpcb) -> Self {
        TcpStats {
            tcps_version: TCP_STATS_VERSION,
            tcps_len: TCP_STATS_LEN as u32,
            tcps_snd_bytes: tp.t_snd_bytes,
            tcps_rcv_bytes: tp.t_rcv_bytes,
            tcps_snd_segs: tp.t_snd_segs,
            tcps_rcv_segs: tp.t_rcv_segs,
            tcps_snd_rexmitpack: tp.t_sndrexmitpack,
            tcps_snd_rexmitbytes: tp.t_rexmit_bytes,
            tcps_rexmttimeo: u64::from(tp.t_rexmttimeo),
            tcps_rcv_dupack: u64::from(tp.t_rcvdupack),
            tcps_sack_recovery_episode: u64::from(tp.t_sack_recovery_episode),
            tcps_tlp_probes: u64::from(tp.t_sndtlppack),
            tcps_tlp_bytes: tp.t_sndtlpbyte,
            tcps_lost_rexmit: u64::from(tp.t_lost_rexmit),
            tcps_dsack_pack: u64::from(tp.t_dsack_pack),
            tcps_dsack_bytes: tp.t_dsack_bytes,
            tcps_rcv_ooopack: tp.t_rcvoopack,
            tcps_snd_zerowin: tp.t_sndzerowin,
            tcps_ecn_reductions: u64::from(tp.t_ecn_reductions),
            tcps_persisttimeo: u64::from(tp.t_persisttimeo),
            tcps_keepprobe: u64::from(tp.t_keepprobe),
        }
    }

    /// The structure's bytes (native byte order, no padding: two u32 then u64s).
    pub fn to_bytes(&self) -> [u8; TCP_STATS_LEN] {
        let mut b = [0u8; TCP_STATS_LEN];
        b[0..4].copy_from_slice(&self.tcps_version.to_ne_bytes());
        b[4..8].copy_from_slice(&self.tcps_len.to_ne_bytes());
        let words = [
            self.tcps_snd_bytes,
            self.tcps_rcv_bytes,
            self.tcps_snd_segs,
            self.tcps_rcv_segs,
            self.tcps_snd_rexmitpack,
            self.tcps_snd_rexmitbytes,
            self.tcps_rexmttimeo,
            self.tcps_rcv_dupack,
            self.tcps_sack_recovery_episode,
            self.tcps_tlp_probes,
            self.tcps_tlp_bytes,
            self.tcps_lost_rexmit,
            self.tcps_dsack_pack,
            self.tcps_dsack_bytes,
            self.tcps_rcv_ooopack,
            self.tcps_snd_zerowin,
            self.tcps_ecn_reductions,
            self.tcps_persisttimeo,
            self.tcps_keepprobe,
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }
}

// The hook types of `TcpFunctionBlock`. The first `*mut c_void` of a hook is the
// connection's stack state, as `init` returned it through its last argument.
/// [`TcpFunctionBlock::init`]: `init(cx, mode, old, &mut state)` stores the new state.
pub type InitHook =
    extern "C" fn(&mut StackCtx, InitMode, OldStack, &mut *mut c_void) -> HookStatus;
/// [`TcpFunctionBlock::fini`]: `fini(state, cx, purged)` frees the state.
pub type FiniHook = extern "C" fn(*mut c_void, &mut StackCtx, bool) -> HookStatus;
/// [`TcpFunctionBlock::do_segment`].
pub type SegmentHook = extern "C" fn(*mut c_void, &mut StackCtx, &SegIn<'_>) -> HookStatus;
/// [`TcpFunctionBlock::output`], [`TcpFunctionBlock::switch_failed`].
pub type StateHook = extern "C" fn(*mut c_void, &mut StackCtx) -> HookStatus;
/// [`TcpFunctionBlock::timer`] (`which`), [`TcpFunctionBlock::mtu_chg`] (`mtu`).
pub type U32Hook = extern "C" fn(*mut c_void, &mut StackCtx, u32) -> HookStatus;
/// [`TcpFunctionBlock::ctloutput`].
pub type CtlHook = extern "C" fn(*mut c_void, &mut StackCtx, &mut SockOpt<'_>) -> HookStatus;
/// [`TcpFunctionBlock::handoff_ok`] (no state: the block is not attached yet).
pub type HandoffHook = extern "C" fn(&StackCtx) -> HookStatus;
/// [`TcpFunctionBlock::chg_query`].
pub type ChgQueryHook = extern "C" fn(*mut c_void, &StackCtx, &mut ChgQuery) -> HookStatus;
/// [`TcpFunctionBlock::info`].
pub type InfoHook = extern "C" fn(*mut c_void, &StackCtx, &mut TcpInfo) -> HookStatus;
/// [`TcpFunctionBlock::inherit`].
pub type InheritHook = extern "C" fn(*mut c_void, &mut StackCtx, &Tcpcb) -> HookStatus;

/// The function block descriptor (FreeBSD `struct tcp_function_block`). A prefix type.
///
/// Required hooks (FreeBSD's register_tcp_function_block checks the same): `output`,
/// `do_segment`, `ctloutput`, `handoff_ok`; and a non-empty name. The host refuses a block
/// without them with EINVAL.
///
/// The optional hooks may be `None`: no `init` means the state pointer stays null; no
/// `timer`, `mtu_chg`, `switch_failed`, `inherit` means the host skips the call; no `info`
/// means TCP_INFO is [`TcpInfo::from_tcpcb`]; no `chg_query` means the old stack never
/// answers. Each hook's contract is on the matching [`TcpStack`] method.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = TcpFunctionBlockRef)))]
#[sabi(missing_field(option))]
pub struct TcpFunctionBlock {
    /// The block's name (TCP_FUNCTION_BLK, `functions_default`): 1 to 31 bytes, no
    /// whitespace or commas, unique among every block's names (EALREADY).
    pub name: RStr<'static>,
    /// Further names the block registers under (at most 8 names in all, with `name`).
    pub aliases: RSlice<'static, RStr<'static>>,
    /// [`tcp_func`] flags.
    pub flags: u32,
    /// Names of the block's counters (FreeBSD tcpstat names), exported by the host and
    /// bumped with [`StackCtx::count`].
    pub counters: RSlice<'static, RStr<'static>>,
    /// [`TcpStack::init`]; writes the new state through its last argument.
    pub init:
        Option<extern "C" fn(&mut StackCtx, InitMode, OldStack, &mut *mut c_void) -> HookStatus>,
    /// [`TcpStack::fini`]; frees the state (called once per state).
    pub fini: Option<extern "C" fn(*mut c_void, &mut StackCtx, bool) -> HookStatus>,
    /// [`TcpStack::do_segment`] (required).
    pub do_segment: Option<extern "C" fn(*mut c_void, &mut StackCtx, &SegIn<'_>) -> HookStatus>,
    /// [`TcpStack::output`] (required).
    pub output: Option<extern "C" fn(*mut c_void, &mut StackCtx) -> HookStatus>,
    /// [`TcpStack::timer`].
    pub timer: Option<extern "C" fn(*mut c_void, &mut StackCtx, u32) -> HookStatus>,
    /// [`TcpStack::ctloutput`] (required).
    pub ctloutput:
        Option<extern "C" fn(*mut c_void, &mut StackCtx, &mut SockOpt<'_>) -> HookStatus>,
    /// [`TcpStack::handoff_ok`] (required).
    pub handoff_ok: Option<extern "C" fn(&StackCtx) -> HookStatus>,
    /// [`TcpStack::mtu_chg`].
    pub mtu_chg: Option<extern "C" fn(*mut c_void, &mut StackCtx, u32) -> HookStatus>,
    /// [`TcpStack::switch_failed`].
    pub switch_failed: Option<extern "C" fn(*mut c_void, &mut StackCtx) -> HookStatus>,
    /// [`TcpStack::chg_query`].
    pub chg_query: Option<extern "C" fn(*mut c_void, &StackCtx, &mut ChgQuery) -> HookStatus>,
    /// [`TcpStack::info`].
    pub info: Option<extern "C" fn(*mut c_void, &StackCtx, &mut TcpInfo) -> HookStatus>,
    /// [`TcpStack::inherit`].
    #[sabi(last_prefix_field)]
    pub inherit: Option<extern "C" fn(*mut c_void, &mut StackCtx, &Tcpcb) -> HookStatus>,
}

/// What a stack implements. [`crate::export_function_block!`] wraps it into the ABI.
///
/// `Self` is the per-connection state (FreeBSD's `t_fb_ptr`): made by `init`, consumed by
/// `fini`. The shared part of the connection is the [`StackCtx`] every hook gets. Read the
/// module docs ("The host<->stack contract") first: which events arrive as which calls,
/// what the host does to the tcpcb, timers, TSO, batching, switches. Hooks run one at a
/// time per connection, on the thread driving the host, and must not block. A hook's
/// errno is passed on or ignored as each method says; a panic is a plugin fault that
/// usually costs the connection (see "Errors and panics").
pub trait TcpStack: Sized + Send + 'static {
    /// The block's name (TCP_FUNCTION_BLK): 1 to 31 bytes, no whitespace or commas, unique
    /// among the names and aliases of every registered block.
    const NAME: &'static str;
    /// Further names the block answers to (at most 7: 8 names in all).
    const ALIASES: &'static [RStr<'static>] = &[];
    /// [`tcp_func`] flags.
    const FLAGS: u32 = tcp_func::DEFAULT_OK;
    /// Names of the block-wide counters (FreeBSD tcpstat names), in the order of the
    /// indices given to [`StackCtx::count`]. The host exports them and sums counters of
    /// the same name over blocks.
    const COUNTERS: &'static [RStr<'static>] = &[];

    /// Builds the stack's per-connection state (FreeBSD tfb_tcp_fb_init).
    ///
    /// **When**: [`InitMode::Fresh`] when a connection is created on this block (a new
    /// socket in CLOSED, or a connection the SYN cache made, in SYN_RECEIVED, before
    /// `inherit`); [`InitMode::Switch`] when a live connection switches to it, after its
    /// `handoff_ok` accepted (see "Stack switch").
    ///
    /// **May**: read the tcpcb, the buffers, the tunables; arm the timers the connection's
    /// state needs (none is armed on entry, in either mode: after a switch, what the old
    /// stack had is gone unless the host restores it on failure); in switch mode, ask the
    /// old stack with `old.query(cx, ..)` and seed its own state from the tcpcb
    /// (`t_srtt`/`t_rttvar` are microseconds; what is in flight is `snd_una..snd_max`). A
    /// Fresh init in CLOSED has nothing to do yet (connect will call `output`); in
    /// SYN_RECEIVED, the connection-establishment timer is FreeBSD's choice.
    ///
    /// **Must not**: write to the tcpcb before it can no longer fail (a failed switch does
    /// not undo its changes); keep `old` beyond the call.
    ///
    /// **Returns** the state, or an errno: Fresh, the connection is not made (socket(2)
    /// fails; an accepted connection is freed and the peer gets a RST); Switch, the old
    /// stack keeps the connection and the application gets the errno.
    fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno>;
    /// Tears the state down (tfb_tcp_fb_fini). Called once per state, last.
    ///
    /// **When**: `purged == false` after a successful switch away from this block, the new
    /// stack already in charge; `purged == true` when the connection is freed (done and
    /// closed by the application, aborted, never accepted, made into a listener by
    /// listen(2), or after a plugin fault, possibly this stack's own panic), or when the
    /// host itself is torn down (then with a null host handle: the ops do nothing).
    ///
    /// **May**: release its own resources. **Must not** expect its work to matter: on a
    /// switch it runs with no timer visible and whatever it arms or stops is undone, and
    /// the tcpcb belongs to the new stack; when purged the host cancels the timers after
    /// it. Nothing is returned; the host ignores what the hook reports.
    fn fini(self, _cx: &mut StackCtx, _purged: bool) {}
    /// One incoming segment for this connection (tcp_input's tcp_do_segment).
    ///
    /// **When**: for every segment (or LRO aggregate, see [`SegIn`]) the host demultiplexed
    /// to the connection, in any state but TIME_WAIT (the host's), CLOSED included; never
    /// for a listener. Checksums are verified; nothing else is checked (sequence
    /// acceptability, PAWS, RST and SYN rules are the stack's).
    ///
    /// **May**: everything tcp_input does: update the tcpcb (set `t_rcvtime`, the state,
    /// `tf2::FIN_RCVD`), store data (`rcv_write`/`rcv_commit`), drop acknowledged send
    /// bytes (`snd_drop`), call the CC, arm and stop timers, report events, send
    /// (`output`).
    ///
    /// **Must**: send what the segment calls for (ACK, data the ACK let out) itself, unless
    /// [`HostIf::input_batch`] is true, in which case it may leave that to the `output` call
    /// the host makes at the end of the batch. **Must not** keep `seg` or its payload past the
    /// call.
    ///
    /// **Returns**: the host ignores an errno (the segment is simply done with).
    fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno>;
    /// Send what can be sent now (tcp_output).
    ///
    /// **When**: after the host changed something the stack must act on: connect (SYN_SENT
    /// written: send the SYN), send (data appended), recv (buffer space freed: a window
    /// update may be due), shutdown and close (state moved to FIN_WAIT_1/LAST_ACK: send the
    /// FIN after the data; `tf::CLOSED` set), send(MSG_OOB) (`snd_up` moved), after
    /// `mtu_chg`, and at the end of a receive batch. Possibly in any state.
    ///
    /// **May**: send data, SYN, FIN and ACKs as windows, CC and rules allow, arm timers,
    /// report events. **Returns**: the host ignores an errno.
    fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno>;
    /// Timer `which` (a `tt::*`) fired (tcp_timer_*).
    ///
    /// **When**: once the host clock reached a deadline set with `timer_start`. The host
    /// has already forgotten the timer (re-arm it here for another round); a timer stopped
    /// or re-armed in the meantime is not delivered (see "Timers"). In TIME_WAIT, `tt::TWO_MSL` must end the connection (report
    /// `Closed`).
    ///
    /// **May**: retransmit, probe, drop the connection (set `t_softerror`, CLOSED, report
    /// `Closed`), call the CC (`CC_RTO`). **Returns**: the host ignores an errno.
    fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno>;
    /// A socket option (tcp_ctloutput): get or set, see [`SockOpt`].
    ///
    /// **When**: setsockopt/getsockopt of any option the host does not answer itself (the
    /// host keeps TCP_CONGESTION, TCP_FUNCTION_BLK, TCP_CCALGOOPT, TCP_SIFTR, TCP_KEEP*,
    /// TCP_USER_TIMEOUT, TCP_REMOTE_UDP_ENCAPS_PORT, SO_KEEPALIVE, SO_LINGER,
    /// SO_OOBINLINE, SO_SNDBUF and SO_RCVBUF, and answers getsockopt of TCP_INFO, TCP_STATS
    /// and TCP_FUNCTION_ALIAS; everything else, unknown SOL_SOCKET options included, comes
    /// here); then, as notifications, a set of SO_KEEPALIVE,
    /// TCP_KEEPINIT/IDLE/INTVL/CNT or TCP_USER_TIMEOUT after the host stored the value in
    /// the tcpcb (re-arm the keepalive timer; ENOPROTOOPT is a fine answer); and again
    /// with options already set: after a switch to this block, and on a connection
    /// accepted from a listener the options were set on.
    ///
    /// **May**: change its state and the tcpcb fields the option stands for (`t_flags`
    /// NODELAY/NOPUSH/NOOPT, `t_maxseg`, ...), send (un-corking), arm timers. **Must**
    /// accept a set it already has (replays).
    ///
    /// **Returns**: Ok; ENOPROTOOPT for an option it does not know, EINVAL for a bad value:
    /// the application's call gets the errno as is. A set that succeeds is remembered by the
    /// host (IPPROTO_TCP, TCP_QUICKACK aside) for the replays.
    fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno>;
    /// May a live connection in this state be handed to this stack? (tfb_tcp_handoff_ok)
    ///
    /// **When**: first thing in a switch to this block (setsockopt(TCP_FUNCTION_BLK), a
    /// forced unload moving users); never for a new connection. There is no state yet.
    ///
    /// **May** only look. **Returns** Ok to accept, or an errno to refuse (FreeBSD's rack
    /// answers EAGAIN during the handshake, EINVAL without SACK): the application gets it as
    /// is; a forced unload tries the next block. The default accepts every connection
    /// (plugtcp's `base`, as FreeBSD's default stack; its `rack` refuses as FreeBSD's).
    fn handoff_ok(_cx: &StackCtx) -> Result<(), Errno> {
        Ok(())
    }
    /// The path MTU dropped (tfb_tcp_mtu_chg).
    ///
    /// **When**: an ICMP "fragmentation needed" (ICMPv6 "packet too big") quoting a
    /// sequence number in flight reported a path MTU smaller than `t_maxseg` plus headers.
    /// `mtu` is the new path MTU in bytes (IP packet size, not an MSS). The host has already
    /// set `t_maxseg` from it, `snd_nxt = snd_una`, `snd_recover = snd_max`, and cleared
    /// `tf::FASTRECOVERY` when SACK is on; it calls `output` right after.
    ///
    /// **May**: forget what it knew about the data in flight (segment boundaries, SACK
    /// state, RTT timing of segments that will be resent) so that it goes out again in
    /// smaller segments. It need not send: `output` follows. **Returns**: the host ignores
    /// an errno.
    fn mtu_chg(&mut self, _cx: &mut StackCtx, _mtu: u32) -> Result<(), Errno> {
        Ok(())
    }
    /// The switch away from this stack failed; it keeps the connection.
    ///
    /// **When**: the new block's `init` failed. The host has already put back this
    /// stack's timers (same deadlines) and counters. Whatever the failed `init` wrote into
    /// the tcpcb stays. **May** re-check its state against the tcpcb. **Returns**: ignored.
    fn switch_failed(&mut self, _cx: &mut StackCtx) -> Result<(), Errno> {
        Ok(())
    }
    /// Answer a question from the stack being switched in (tfb_chg_query).
    ///
    /// **When**: during the new block's `init` in switch mode, when it calls
    /// [`OldStack::query`]; this stack is still attached but no longer running: its
    /// timers are stopped.
    ///
    /// **May** only look. Fill the answer and set `q.answered = 1`; leave `answered` 0 for
    /// a question it does not know ([`query`]). **Returns**: an errno goes to the asking
    /// stack.
    fn chg_query(&self, _cx: &StackCtx, _q: &mut ChgQuery) -> Result<(), Errno> {
        Ok(())
    }
    /// TCP_INFO (FreeBSD's tcp_fill_info).
    ///
    /// **When**: getsockopt(TCP_INFO) on the connection. `out` arrives filled with
    /// [`TcpInfo::from_tcpcb`]; the stack may overwrite fields with better values (its own
    /// RTT estimate, `rcv_space`, `last_data_recv`, ...). **May** only look (and use host
    /// getters). **Returns**: an errno fails the getsockopt with it.
    fn info(&self, cx: &StackCtx, out: &mut TcpInfo) -> Result<(), Errno> {
        *out = TcpInfo::from_tcpcb(&cx.tp);
        Ok(())
    }
    /// A connection accepted on a listener of this stack (tfb_inherit).
    ///
    /// **When**: once, for a connection the SYN cache made (SYN_RECEIVED), right after its
    /// `init(Fresh)`, before the listener's remembered options are set on it (`ctloutput`)
    /// and before the handshake's ACK reaches `do_segment`. `listener` is the listener's
    /// tcpcb (LISTEN; no stack runs it): the options set on the listener are in its
    /// `t_flags`, `t_flags2` and `t_keep*`, and the host already copied TCP_NODELAY,
    /// TCP_NOPUSH, TCP_NOOPT, keepalive, TCP_QUICKACK, TCP_CORK and the timeouts into the
    /// new tcpcb.
    ///
    /// **May**: adjust its state and the new tcpcb. **Returns**: an errno frees the
    /// connection (the peer gets a RST).
    fn inherit(&mut self, _cx: &mut StackCtx, _listener: &Tcpcb) -> Result<(), Errno> {
        Ok(())
    }
}

/// # Safety
/// `st` is a `Box<T>` made by `stack_init::<T>`; the host passes each stack only its own.
#[inline]
unsafe fn stack_state<'a, T>(st: *mut c_void) -> Result<&'a mut T, Errno> {
    // SAFETY: see the function's contract.
    unsafe { (st as *mut T).as_mut() }.ok_or(Errno::EINVAL)
}

extern "C" fn stack_init<T: TcpStack>(
    cx: &mut StackCtx,
    mode: InitMode,
    old: OldStack,
    out: &mut *mut c_void,
) -> HookStatus {
    guard(|| {
        let st = T::init(cx, mode, old)?;
        *out = Box::into_raw(Box::new(st)) as *mut c_void;
        Ok(())
    })
}
extern "C" fn stack_fini<T: TcpStack>(
    st: *mut c_void,
    cx: &mut StackCtx,
    purged: bool,
) -> HookStatus {
    guard(|| {
        if !st.is_null() {
            // SAFETY: made by Box::into_raw in stack_init::<T>; the host calls fini once.
            unsafe { Box::from_raw(st as *mut T) }.fini(cx, purged);
        }
        Ok(())
    })
}
extern "C" fn stack_handoff_ok<T: TcpStack>(cx: &StackCtx) -> HookStatus {
    guard(|| T::handoff_ok(cx))
}

/// The hooks that run on a connection's stack state, written once: this table makes the
/// `extern "C"` shim of each (the [`TcpStack`] method on the state `init` made, behind a
/// panic guard) and [`StackVtable`], the descriptor that points at them. Each hook's
/// contract is on its [`TcpStack`] method; the descriptor's fields are [`TcpFunctionBlock`].
macro_rules! stateful_hooks {
    ($( $hook:ident ( $cx:ident : $cx_ty:ty $(, $arg:ident : $ty:ty)* ); )*) => {
        /// The shims the descriptor points at.
        mod shim {
            use super::*;
            $(
                pub(super) extern "C" fn $hook<T: TcpStack>(
                    st: *mut c_void,
                    $cx: $cx_ty
                    $(, $arg: $ty)*
                ) -> HookStatus {
                    // SAFETY: as in `stack_state`.
                    guard(|| unsafe { stack_state::<T>(st) }?.$hook($cx $(, $arg)*))
                }
            )*
        }

        /// Builds the ABI descriptor of `T`. Used by [`crate::export_function_block!`].
        pub struct StackVtable<T>(PhantomData<T>);

        impl<T: TcpStack> StackVtable<T> {
            abi_stable::staticref! {
                const WM: WithMetadata<TcpFunctionBlock> = WithMetadata::new(TcpFunctionBlock {
                    name: RStr::from_str(T::NAME),
                    aliases: RSlice::from_slice(T::ALIASES),
                    flags: T::FLAGS,
                    counters: RSlice::from_slice(T::COUNTERS),
                    init: Some(stack_init::<T>),
                    fini: Some(stack_fini::<T>),
                    handoff_ok: Some(stack_handoff_ok::<T>),
                    $($hook: Some(shim::$hook::<T>),)*
                })
            }

            /// The block's descriptor.
            pub const BLOCK: TcpFunctionBlockRef = TcpFunctionBlockRef(Self::WM.as_prefix());
        }
    };
}

stateful_hooks! {
    do_segment(cx: &mut StackCtx, seg: &SegIn<'_>);
    output(cx: &mut StackCtx);
    timer(cx: &mut StackCtx, which: u32);
    ctloutput(cx: &mut StackCtx, opt: &mut SockOpt<'_>);
    mtu_chg(cx: &mut StackCtx, mtu: u32);
    switch_failed(cx: &mut StackCtx);
    chg_query(cx: &StackCtx, q: &mut ChgQuery);
    info(cx: &StackCtx, out: &mut TcpInfo);
    inherit(cx: &mut StackCtx, listener: &Tcpcb);
}

/// `true` in states where FreeBSD lets any stack take a connection over (CLOSED, LISTEN).
/// A helper for `handoff_ok`; the host does not call it.
pub fn state_is_quiet(s: TcpState) -> bool {
    matches!(s, TcpState::Closed | TcpState::Listen)
}
