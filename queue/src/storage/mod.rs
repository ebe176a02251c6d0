//! Storage: the checksummed record format and the segment log of one queue, split as a writer
//! (a thread that group-commits appends) and recovery (replay on open). Nothing here knows about
//! delivery, visibility or the network.

pub(crate) mod log;
pub(crate) mod record;
