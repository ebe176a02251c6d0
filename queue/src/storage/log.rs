//! The append-only segment log of one queue: recovery on open, and a writer thread that group-
//! commits appends (one `fdatasync` per batch, so throughput does not die on fsync), rolls
//! segments and deletes fully acknowledged ones.
//!
//! Compaction removes a prefix of segments: every segment older than the oldest one still holding
//! a live (undeleted) message. Deletes and delivery records always follow the send they refer to,
//! so removing that prefix never resurrects or loses anything. The writer tracks which segment
//! holds which live message itself, from the records it writes, so compaction cannot race with
//! appends that are still in flight.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

use super::record::{self, Record, Tail};

/// Told once a record (and everything before it) is durable, or why it is not. The writer thread
/// only sends on it: what follows durability runs on the receiving side, never on the writer.
pub type Durable = oneshot::Sender<io::Result<()>>;

pub enum Op {
    /// Append a record; `durable`, if any, is told after the batch holding it is fsynced.
    Append(Record, Option<Durable>),
    /// Told once every earlier append is durable.
    Barrier(Durable),
}

/// A message found on disk that no delete record covers.
#[derive(Debug)]
pub struct Recovered {
    pub id: u64,
    pub deliveries: u32,
    pub body: String,
}

/// The result of opening a queue directory.
pub struct Opened {
    /// Live messages, oldest first.
    pub messages: Vec<Recovered>,
    pub next_id: u64,
    pub writer: mpsc::Sender<Op>,
}

/// Maximum appends folded into one fsync.
const MAX_BATCH: usize = 8192;

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens (creating if needed) the log in `dir`: replays every segment, then starts the writer
/// thread on a fresh segment. `channel` bounds the appends waiting for the writer.
pub fn open(dir: &Path, segment_bytes: u64, channel: usize) -> io::Result<Opened> {
    fs::create_dir_all(dir)?;
    let segments = list_segments(dir)?;
    let mut live: BTreeMap<u64, (u32, String, u64)> = BTreeMap::new();
    let mut next_id = 1u64;
    for &seg in &segments {
        let path = segment_path(dir, seg);
        let (records, tail) = record::read_all(File::open(&path)?)?;
        if let Tail::Torn(at) = tail {
            // Only the last write before a crash can be torn; it was never acknowledged.
            tracing::warn!(segment = %path.display(), offset = at, "segment ends in a torn record");
        }
        for rec in records {
            match rec {
                Record::Send {
                    id,
                    deliveries,
                    body,
                } => {
                    next_id = next_id.max(id + 1);
                    live.insert(id, (deliveries, body, seg));
                }
                Record::Delete { id } => {
                    live.remove(&id);
                }
                Record::Deliver { id } => {
                    if let Some(m) = live.get_mut(&id) {
                        m.0 = m.0.saturating_add(1);
                    }
                }
                Record::Meta { next_id: n } => next_id = next_id.max(n),
            }
        }
    }
    let mut state = Segments {
        dir: dir.to_path_buf(),
        on_disk: segments.clone(),
        segment_of: HashMap::with_capacity(live.len()),
        live_in: BTreeMap::new(),
    };
    for (&id, (_, _, seg)) in &live {
        state.add(id, *seg);
    }
    let active = segments.last().map_or(1, |s| s + 1);
    let mut writer = Writer {
        segments: state,
        file: None,
        active,
        written: 0,
        segment_bytes,
        next_id,
        broken: false,
    };
    writer.roll()?;
    writer.compact();
    let (tx, rx) = mpsc::channel(channel);
    let name = format!(
        "queue-log-{}",
        dir.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    std::thread::Builder::new()
        .name(name)
        .spawn(move || writer.run(rx))?;
    let messages = live
        .into_iter()
        .map(|(id, (deliveries, body, _))| Recovered {
            id,
            deliveries,
            body,
        })
        .collect();
    Ok(Opened {
        messages,
        next_id,
        writer: tx,
    })
}

/// Which segment holds each live message, and how many live messages each segment holds.
struct Segments {
    dir: PathBuf,
    on_disk: Vec<u64>,
    segment_of: HashMap<u64, u64>,
    live_in: BTreeMap<u64, usize>,
}

impl Segments {
    fn add(&mut self, id: u64, seg: u64) {
        if let Some(old) = self.segment_of.insert(id, seg) {
            self.dec(old);
        }
        *self.live_in.entry(seg).or_default() += 1;
    }

    fn remove(&mut self, id: u64) {
        if let Some(seg) = self.segment_of.remove(&id) {
            self.dec(seg);
        }
    }

    fn dec(&mut self, seg: u64) {
        if let Some(n) = self.live_in.get_mut(&seg) {
            *n -= 1;
            if *n == 0 {
                self.live_in.remove(&seg);
            }
        }
    }

    /// Deletes every segment older than both the oldest live one and the active one.
    fn compact(&mut self, active: u64) -> io::Result<()> {
        let floor = self
            .live_in
            .keys()
            .next()
            .copied()
            .unwrap_or(active)
            .min(active);
        let mut removed = false;
        while let Some(&seg) = self.on_disk.first() {
            if seg >= floor {
                break;
            }
            fs::remove_file(segment_path(&self.dir, seg))?;
            self.on_disk.remove(0);
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Creates segment file `path` and writes its meta record, durably.
fn start_segment(path: &Path, meta: &[u8]) -> io::Result<BufWriter<File>> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    let mut file = BufWriter::with_capacity(256 * 1024, file);
    file.write_all(meta)?;
    file.flush()?;
    file.get_ref().sync_data()?;
    Ok(file)
}

struct Writer {
    segments: Segments,
    file: Option<BufWriter<File>>,
    active: u64,
    written: u64,
    segment_bytes: u64,
    next_id: u64,
    /// A write failed: the active segment may end in garbage, so the next batch starts a new one.
    broken: bool,
}

impl Writer {
    /// Starts segment `self.active` (a new file) with a meta record, durably.
    fn roll(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            // Best effort: everything acknowledged in it was already fsynced.
            let _ = f.flush().and_then(|_| f.get_ref().sync_data());
            self.active += 1;
        }
        let path = segment_path(&self.segments.dir, self.active);
        let meta = Record::Meta {
            next_id: self.next_id,
        }
        .encode();
        let file = match start_segment(&path, &meta) {
            Ok(f) => f,
            Err(e) => {
                // The new file holds nothing acknowledged: remove it, so the next roll (once
                // the disk has room again) can create the same segment instead of failing on
                // "file exists" forever.
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        self.segments.on_disk.push(self.active);
        self.written = meta.len() as u64;
        self.file = Some(file);
        // Should this fail, the batch fails and the next one rolls past this segment.
        sync_dir(&self.segments.dir)?;
        self.broken = false;
        Ok(())
    }

    fn compact(&mut self) {
        if let Err(e) = self.segments.compact(self.active) {
            tracing::warn!(error = %e, "queue log compaction failed");
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(256);
        while let Some(op) = rx.blocking_recv() {
            batch.push(op);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&batch);
            if result.is_err() {
                self.broken = true;
            } else {
                self.compact();
            }
            for op in batch.drain(..) {
                let done = match op {
                    Op::Append(_, done) => done,
                    Op::Barrier(done) => Some(done),
                };
                if let Some(done) = done {
                    // A dropped receiver only means nobody waits for this one.
                    let _ = done.send(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    });
                }
            }
        }
        if let Some(mut f) = self.file.take() {
            let _ = f.flush().and_then(|_| f.get_ref().sync_data());
        }
    }

    fn write_batch(&mut self, batch: &[Op]) -> io::Result<()> {
        if self.broken || self.file.is_none() {
            self.roll()?;
        }
        let mut needs_sync = false;
        for op in batch {
            let Op::Append(rec, done) = op else {
                needs_sync = true;
                continue;
            };
            needs_sync |= done.is_some();
            if self.written >= self.segment_bytes {
                self.roll()?;
            }
            let bytes = rec.encode();
            let file = self
                .file
                .as_mut()
                .ok_or_else(|| io::Error::other("no segment open"))?;
            file.write_all(&bytes)?;
            self.written += bytes.len() as u64;
            match rec {
                Record::Send { id, .. } => {
                    self.next_id = self.next_id.max(id + 1);
                    self.segments.add(*id, self.active);
                }
                Record::Delete { id } => self.segments.remove(*id),
                Record::Deliver { .. } | Record::Meta { .. } => {}
            }
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("no segment open"))?;
        file.flush()?;
        if needs_sync {
            file.get_ref().sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(tx: &mpsc::Sender<Op>, rec: Record) -> io::Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        tx.blocking_send(Op::Append(rec, Some(done_tx)))
            .map_err(|_| io::Error::other("writer gone"))?;
        done_rx
            .blocking_recv()
            .map_err(|_| io::Error::other("no answer"))?
    }

    fn send(id: u64, body: &str) -> Record {
        Record::Send {
            id,
            deliveries: 0,
            body: body.into(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ews-queue-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn recovers_live_messages_and_delivery_counts() {
        let dir = tmp("recover");
        {
            let o = open(&dir, 1 << 20, 16).unwrap();
            assert!(o.messages.is_empty());
            for i in 1..=5 {
                append(&o.writer, send(i, &format!("m{i}"))).unwrap();
            }
            append(&o.writer, Record::Delete { id: 2 }).unwrap();
            append(&o.writer, Record::Deliver { id: 3 }).unwrap();
        }
        let o = open(&dir, 1 << 20, 16).unwrap();
        let ids: Vec<u64> = o.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![1, 3, 4, 5]);
        assert_eq!(o.messages[1].deliveries, 1);
        assert_eq!(o.next_id, 6);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compacts_fully_acknowledged_prefix_and_keeps_ids_increasing() {
        let dir = tmp("compact");
        {
            // Tiny segments: every send rolls to a new one.
            let o = open(&dir, 1, 16).unwrap();
            for i in 1..=10 {
                append(&o.writer, send(i, "x")).unwrap();
            }
            let before = list_segments(&dir).unwrap();
            assert!(before.len() >= 10);
            for i in 1..=9 {
                append(&o.writer, Record::Delete { id: i }).unwrap();
            }
            // Every segment before the one holding message 10 (the last written) is gone.
            let after = list_segments(&dir).unwrap();
            assert_eq!(after.first(), before.last(), "{after:?}");
            append(&o.writer, Record::Delete { id: 10 }).unwrap();
        }
        let o = open(&dir, 1, 16).unwrap();
        assert!(o.messages.is_empty());
        assert_eq!(o.next_id, 11);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_loses_only_the_torn_record() {
        let dir = tmp("torn");
        {
            let o = open(&dir, 1 << 20, 16).unwrap();
            append(&o.writer, send(1, "kept")).unwrap();
        }
        let last = *list_segments(&dir).unwrap().last().unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(&dir, last))
            .unwrap();
        f.write_all(&send(2, "torn").encode()[..10]).unwrap();
        drop(f);
        let o = open(&dir, 1 << 20, 16).unwrap();
        assert_eq!(o.messages.len(), 1);
        assert_eq!(o.messages[0].body, "kept");
        fs::remove_dir_all(&dir).unwrap();
    }
}
