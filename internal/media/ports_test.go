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
