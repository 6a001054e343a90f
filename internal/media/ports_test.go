package media

import (
	"errors"
	"sync"
	"testing"
)

func TestPortsRange(t *testing.T) {
	tests := []struct {
		min, max, pairs int
		ok              bool
	}{
		{10000, 10003, 2, true},
		{10001, 10004, 1, true}, // 10002/10003; 10004 has no odd neighbour
		{10000, 10000, 0, false},
		{10001, 10002, 0, false},
		{20000, 10000, 0, false},
		{80, 1000, 0, false},
		{60000, 70000, 0, false},
		{10000, 20000, 5000, true},
	}
	for _, tt := range tests {
		p, err := NewPorts(tt.min, tt.max)
		if (err == nil) != tt.ok {
			t.Errorf("NewPorts(%d, %d) error = %v", tt.min, tt.max, err)
			continue
		}
		if err == nil && p.Cap() != tt.pairs {
			t.Errorf("NewPorts(%d, %d) has %d pairs, want %d", tt.min, tt.max, p.Cap(), tt.pairs)
		}
	}
}

func TestPortsExhaustAndRotate(t *testing.T) {
	p, _ := NewPorts(10001, 10008) // 10002, 10004, 10006 (10008 lacks 10009)
	var got []int
	for {
		port, err := p.Get()
		if errors.Is(err, ErrNoPorts) {
			break
		}
		if port%2 != 0 || port < 10002 || port+1 > 10008 {
			t.Fatalf("port %d out of range or odd", port)
		}
		got = append(got, port)
	}
	if len(got) != 3 || p.InUse() != 3 {
		t.Fatalf("got %v, in use %d", got, p.InUse())
	}
	if !p.Put(10004) || p.Put(10004) || p.Put(10005) || p.Put(9998) || p.Put(10008) {
		t.Error("Put accepted a port that was not out")
	}
	if port, _ := p.Get(); port != 10004 {
		t.Errorf("got %d, want the only free pair 10004", port)
	}
	// Rotation: a freed pair is not the next one handed out while others are free.
	p.Put(10002)
	p.Put(10004)
	if port, _ := p.Get(); port == 10004 {
		t.Error("the pair just freed was handed out first")
	}
}

func TestPortsConcurrentNoLeak(t *testing.T) {
	p, _ := NewPorts(10000, 10199)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				port, err := p.Get()
				if err != nil {
					continue
				}
				if !p.Put(port) {
					t.Errorf("Put(%d) refused", port)
				}
			}
		}()
	}
	wg.Wait()
	if p.InUse() != 0 {
		t.Errorf("%d pairs leaked", p.InUse())
	}
}

func BenchmarkPortsGetPut(b *testing.B) {
	p, _ := NewPorts(10000, 20000)
	b.ReportAllocs()
	for b.Loop() {
		port, _ := p.Get()
		p.Put(port)
	}
}

// The ports of the next call cannot be guessed from those of the last:
// consecutive allocations are not neighbours, they spread over the whole
// range, two allocators do not share a sequence, and a pair is never out
// twice.
func TestPortsUnpredictable(t *testing.T) {
	const lo, hi = 20000, 29999 // 5000 pairs
	p, _ := NewPorts(lo, hi)
	q, _ := NewPorts(lo, hi)
	const calls = 2000
	var buckets [10]int
	neighbours, same := 0, 0
	prev := 0
	for i := 0; i < calls; i++ {
		// A call takes two pairs and gives them back when it ends.
		a, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := p.Get()
		if a == b {
			t.Fatalf("pair %d handed out twice", a)
		}
		if d := a - prev; d >= -4 && d <= 4 {
			neighbours++
		}
		if d := b - a; d >= -4 && d <= 4 {
			neighbours++
		}
		prev = b
		buckets[(a-lo)*len(buckets)/(hi-lo+1)]++
		if qa, _ := q.Get(); qa == a {
			same++
		}
		p.Put(a)
		p.Put(b)
		q.Put(a)
	}
	// A uniform choice makes a neighbour (4 of 5000 pairs) about 0.1% likely.
	if neighbours > calls/50 {
		t.Errorf("%d of %d allocations were within two pairs of the one before", neighbours, 2*calls)
	}
	for i, n := range buckets {
		if n < calls/10/2 || n > calls/10*2 {
			t.Errorf("tenth %d of the range got %d of %d allocations: %v", i, n, calls, buckets)
		}
	}
	if same > calls/50 {
		t.Errorf("two allocators agreed %d times in %d", same, calls)
	}
	// Everything out at once: all distinct, then exhausted.
	r, _ := NewPorts(10000, 10199)
	seen := map[int]bool{}
	for {
		port, err := r.Get()
		if errors.Is(err, ErrNoPorts) {
			break
		}
		if seen[port] {
			t.Fatalf("port %d out twice", port)
		}
		seen[port] = true
	}
	if len(seen) != r.Cap() {
		t.Fatalf("%d of %d pairs handed out", len(seen), r.Cap())
	}
}

// A pair given back is not handed out again while the queue of recently
// freed pairs holds it and other pairs are free.
func TestPortsCooling(t *testing.T) {
	p, _ := NewPorts(10000, 10039) // 20 pairs: 10 cool
	var out []int
	for i := 0; i < 20; i++ {
		port, _ := p.Get()
		out = append(out, port)
	}
	// Free 10: they all cool, none is free.
	for _, port := range out[:10] {
		p.Put(port)
	}
	p.Put(out[10]) // the queue is full: out[0] leaves it
	port, _ := p.Get()
	if port != out[0] {
		t.Fatalf("got %d, want %d, the only pair out of the queue", port, out[0])
	}
}
