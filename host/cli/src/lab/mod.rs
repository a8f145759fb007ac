//! The CC lab: `plugtcp lab run SCENARIO.toml`. A scenario file ([`scenario`]) describes links,
//! queue disciplines, capacity traces, flows and sweeps; [`net`] builds it on the simulated
//! network (virtual clock, one host pair per flow), [`run`] drives the applications and
//! samples the time series, [`results`] holds what was measured, [`output`] writes CSV and
//! JSON, [`report`] the plots and `report.html`, and [`kernel`] runs the same scenario with the
//! Linux kernel's TCP over veth pairs shaped by tc.

pub mod driver;
pub mod kernel;
pub mod net;
pub mod output;
pub mod plots;
pub mod report;
pub mod results;
pub mod run;
pub mod scenario;
pub mod units;
