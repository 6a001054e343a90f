package cdr

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// errJournalFull is returned by journal.append when the records do not fit.
var errJournalFull = errors.New("CDR journal full")

// journal is the append-only file of records not yet stored: JSON lines of
// escaped records (EscapeRecord), so that every byte survives. Appends come
// from the writer and from callers that found the queue full; the writer
// alone reads and truncates it.
type journal struct {
	mu    sync.Mutex
	f     *os.File
	path  string
	max   int64
	dirty bool // appended since the last Sync
	buf   []byte

	size    atomic.Int64 // bytes in the file
	pending atomic.Int64 // records in the file not yet replayed
}

// openJournal opens (creating) the journal at path. A torn last line (a
// crash in the middle of an append) is cut off; the complete lines before
// it are kept and counted.
func openJournal(path string, maxBytes int64) (*journal, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	j := &journal{f: f, path: path, max: maxBytes}
	var n, end, off int64
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, err := r.ReadSlice('\n')
		off += int64(len(line))
		if err == bufio.ErrBufferFull {
			for err == bufio.ErrBufferFull {
				line, err = r.ReadSlice('\n')
				off += int64(len(line))
			}
		}
		if err != nil {
			if err != io.EOF {
				f.Close()
				return nil, 0, fmt.Errorf("read CDR journal %s: %w", path, err)
			}
			break
		}
		n++
		end = off
	}
	torn := off - end
	if torn > 0 {
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("cut the torn end of CDR journal %s: %w", path, err)
		}
	}
	j.size.Store(end)
	j.pending.Store(n)
	return j, torn, nil
}

// append writes recs at the end of the journal with one write. It refuses
// (errJournalFull) records that would take the file past its bound; those
// before them are written.
func (j *journal) append(recs []Record) (written int, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return 0, os.ErrClosed
	}
	j.buf = j.buf[:0]
	size := j.size.Load()
	for _, r := range recs {
		line, err := json.Marshal(EscapeRecord(r))
		if err != nil {
			return 0, err // cannot happen: a Record has no unencodable field
		}
		if size+int64(len(j.buf)+len(line)+1) > j.max {
			err = errJournalFull
			break
		}
		j.buf = append(j.buf, line...)
		j.buf = append(j.buf, '\n')
		written++
	}
	if written > 0 {
		if _, werr := j.f.Write(j.buf); werr != nil {
			// A short write leaves a torn line: cut it so the next append starts clean.
			_ = j.f.Truncate(size)
			return 0, werr
		}
		j.size.Add(int64(len(j.buf)))
		j.pending.Add(int64(written))
		j.dirty = true
	}
	if cap(j.buf) > 1<<20 {
		j.buf = nil
	}
	if written < len(recs) {
		return written, errJournalFull
	}
	return written, nil
}

// sync flushes appended records to the disk.
func (j *journal) sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil || !j.dirty {
		return nil
	}
	j.dirty = false
	return j.f.Sync()
}

// read returns up to n records starting at byte off and the offset after
// them. Lines that do not decode (the file was edited or damaged) are
// returned in bad.
func (j *journal) read(off int64, n int) (recs []Record, bad [][]byte, next int64, err error) {
	size := j.size.Load()
	next = off
	chunk := int64(1 << 20)
	for len(recs)+len(bad) < n && next < size {
		want := min(chunk, size-next)
		buf := make([]byte, want)
		if _, err := j.f.ReadAt(buf, next); err != nil && err != io.EOF {
			return recs, bad, next, err
		}
		consumed := 0
		for len(recs)+len(bad) < n {
			i := bytes.IndexByte(buf[consumed:], '\n')
			if i < 0 {
				break
			}
			line := buf[consumed : consumed+i]
			consumed += i + 1
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				bad = append(bad, line)
				continue
			}
			recs = append(recs, UnescapeRecord(r))
		}
		if consumed == 0 {
			if want == size-next {
				break // no complete line left (cannot happen: appends write whole lines)
			}
			chunk *= 2 // one line longer than the chunk
			continue
		}
		next += int64(consumed)
	}
	return recs, bad, next, nil
}

// replayed records that n records up to off were stored.
func (j *journal) replayed(n int) { j.pending.Add(-int64(n)) }

// truncateAt empties the journal if off is its end (nothing was appended
// since the last read) and reports whether it did.
func (j *journal) truncateAt(off int64) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil || j.size.Load() != off {
		return false, nil
	}
	if err := j.f.Truncate(0); err != nil {
		return false, err
	}
	j.size.Store(0)
	j.pending.Store(0)
	j.dirty = true
	return true, nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	return err
}
