// Command silt-go-probe runs one feature of one Go Kafka client against a
// broker, for the compatibility matrix (tests/e2e/test_compat_matrix.py):
//
//	silt-go-probe CLIENT BOOTSTRAP FEATURE TOPIC
//
// CLIENT is sarama or kafka-go; FEATURE one of the matrix's features. The
// topic exists already, with two partitions. Every feature reads back what
// it wrote (records, committed offsets, partition counts) and compares; the
// probe prints "ok" and exits 0, or prints why on stderr and exits 1.
//
// It builds against the client sources that Debian packages under
// /usr/share/gocode/src (golang-github-shopify-sarama-dev,
// golang-github-segmentio-kafka-go-dev), in GOPATH mode, offline:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o silt-go-probe .
package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"time"
)

// rec is one record as written and as read back.
type rec struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   [][2][]byte
}

func (r rec) String() string {
	hs := ""
	for _, h := range r.Headers {
		hs += fmt.Sprintf(" %s=%s", h[0], h[1])
	}
	return fmt.Sprintf("%d/%d key=%q value=%q headers=[%s]", r.Partition, r.Offset, r.Key, r.Value, hs)
}

// records returns n records for partitions 0 and 1 alternately, tagged so
// that those of different batches differ.
func records(tag string, n int) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{
			Partition: int32(i % 2),
			Offset:    -1,
			Key:       []byte(fmt.Sprintf("k%d", i)),
			Value:     []byte(fmt.Sprintf("%s-v%d", tag, i)),
			Headers:   [][2][]byte{{[]byte("h"), []byte(fmt.Sprintf("x%d", i))}},
		}
	}
	return out
}

// sameRecords checks that got holds exactly want: per partition, the same
// keys, values and headers in the same order, at the offsets the producer
// was told (want's offsets, where known) and at consecutive offsets from
// the partition's first.
func sameRecords(want, got []rec, headers bool) error {
	per := func(rs []rec) map[int32][]rec {
		m := map[int32][]rec{}
		for _, r := range rs {
			m[r.Partition] = append(m[r.Partition], r)
		}
		return m
	}
	w, g := per(want), per(got)
	parts := []int{}
	for p := range w {
		parts = append(parts, int(p))
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			return fmt.Errorf("read %d records from partition %d, which got none", len(g[p]), p)
		}
	}
	sort.Ints(parts)
	for _, pi := range parts {
		p := int32(pi)
		if len(w[p]) != len(g[p]) {
			return fmt.Errorf("partition %d: wrote %d records, read %d", p, len(w[p]), len(g[p]))
		}
		for i := range w[p] {
			a, b := w[p][i], g[p][i]
			if !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) {
				return fmt.Errorf("partition %d record %d: wrote %v, read %v", p, i, a, b)
			}
			if a.Offset >= 0 && a.Offset != b.Offset {
				return fmt.Errorf("partition %d record %d: acknowledged at offset %d, read at %d", p, i, a.Offset, b.Offset)
			}
			if b.Offset != g[p][0].Offset+int64(i) {
				return fmt.Errorf("partition %d: offsets not consecutive: %v then %v", p, g[p][0], b)
			}
			if headers && fmt.Sprint(a.Headers) != fmt.Sprint(b.Headers) {
				return fmt.Errorf("partition %d record %d: wrote headers of %v, read %v", p, i, a, b)
			}
		}
	}
	return nil
}

// countPerPartition counts want's records per partition.
func countPerPartition(want []rec) map[int32]int64 {
	m := map[int32]int64{}
	for _, r := range want {
		m[r.Partition]++
	}
	return m
}

// Timestamps for offsets-for-times: five records one second apart, well in
// the past, so that a lookup between two of them has one right answer.
var timesBase = time.Now().Add(-10 * time.Minute).Truncate(time.Second)

func timestampOf(i int) time.Time { return timesBase.Add(time.Duration(i) * time.Second) }

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: silt-go-probe sarama|kafka-go BOOTSTRAP FEATURE TOPIC")
		os.Exit(2)
	}
	client, bootstrap, feature, topic := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	var err error
	switch client {
	case "sarama":
		err = saramaProbe(bootstrap, feature, topic)
	case "kafka-go":
		err = kafkaGoProbe(bootstrap, feature, topic)
	default:
		err = fmt.Errorf("unknown client %q", client)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", client, feature, err)
		os.Exit(1)
	}
	fmt.Println("ok")
}
