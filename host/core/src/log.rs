//! The host's messages for the operator, as FreeBSD's log(9) writes to the kernel message
//! buffer: what `net.inet.tcp.log_in_vain` reports. Bounded, since what triggers a message
//! comes from the wire: past [`MAX_LINES`] waiting, the oldest go and are counted.

use std::collections::VecDeque;

use crate::Host;

/// Lines kept until someone takes them.
pub const MAX_LINES: usize = 256;

#[derive(Default)]
pub struct MessageLog {
    lines: VecDeque<String>,
    /// Lines dropped because nobody took them in time.
    pub dropped: u64,
}

impl MessageLog {
    pub fn push(&mut self, line: String) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }
}

impl Host {
    /// Whether messages are waiting (cheap: a driver checks it after every step).
    pub fn has_log(&self) -> bool {
        !self.log.lines.is_empty()
    }

    /// Takes the waiting messages, oldest first (a driver prints them to stderr, as the
    /// console shows the kernel's).
    pub fn take_log(&mut self) -> Vec<String> {
        self.log.lines.drain(..).collect()
    }

    /// Messages dropped because they were not taken in time.
    pub fn log_dropped(&self) -> u64 {
        self.log.dropped
    }
}
