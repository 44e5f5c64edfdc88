package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "silt-compat"
	// Record batches (Produce v3, Fetch v4), headers, CreateTopics v2,
	// Metadata v5; zstd is a Kafka 2.1 codec.
	c.Version = sarama.V2_1_0_0
	c.Net.DialTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Timeout = 30 * time.Second
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	// With a retention sarama commits with OffsetCommit v2; without one it
	// uses v1, which silt does not serve (nor does Kafka 4.0, KIP-896).
	c.Consumer.Offsets.Retention = 24 * time.Hour
	c.Admin.Timeout = 30 * time.Second
	return c
}

func toSarama(topic string, r rec) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{
		Topic:     topic,
		Partition: r.Partition,
		Key:       sarama.ByteEncoder(r.Key),
		Value:     sarama.ByteEncoder(r.Value),
	}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, sarama.RecordHeader{Key: h[0], Value: h[1]})
	}
	return m
}

func fromSarama(m *sarama.ConsumerMessage) rec {
	r := rec{Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, [2][]byte{h.Key, h.Value})
	}
	return r
}

// saramaProduce sends rs through a SyncProducer (acks=all), in one call,
// and records the offset each was acknowledged at.
func saramaProduce(cfg *sarama.Config, bootstrap, topic string, rs []rec) error {
	p, err := sarama.NewSyncProducer([]string{bootstrap}, cfg)
	if err != nil {
		return fmt.Errorf("new producer: %w", err)
	}
	msgs := make([]*sarama.ProducerMessage, len(rs))
	for i := range rs {
		msgs[i] = toSarama(topic, rs[i])
	}
	if err := p.SendMessages(msgs); err != nil {
		p.Close()
		return fmt.Errorf("send %d records: %w", len(rs), err)
	}
	for i, m := range msgs {
		if m.Partition != rs[i].Partition || m.Offset < 0 {
			p.Close()
			return fmt.Errorf("send %v: acknowledged as %d/%d", rs[i], m.Partition, m.Offset)
		}
		rs[i].Offset = m.Offset
	}
	return p.Close()
}

// saramaReadAll reads every partition that want names from its first
// offset until it has as many records as want holds there, then checks that
// the high watermark agrees (no records beyond them) and compares.
func saramaReadAll(bootstrap, topic string, want []rec) error {
	client, err := sarama.NewClient([]string{bootstrap}, saramaConfig())
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("new consumer: %w", err)
	}
	defer consumer.Close()
	var got []rec
	counts := countPerPartition(want)
	deadline := time.After(30 * time.Second)
	for p, n := range counts {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("consume partition %d: %w", p, err)
		}
		for i := int64(0); i < n; i++ {
			select {
			case m := <-pc.Messages():
				got = append(got, fromSarama(m))
			case e := <-pc.Errors():
				pc.Close()
				return fmt.Errorf("partition %d: %v", p, e)
			case <-deadline:
				pc.Close()
				return fmt.Errorf("partition %d: read %d of %d records in 30 s", p, i, n)
			}
		}
		pc.Close()
		high, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("high watermark of partition %d: %w", p, err)
		}
		if high != got[len(got)-1].Offset+1 {
			return fmt.Errorf("partition %d: high watermark %d after the last record read at %d", p, high, got[len(got)-1].Offset)
		}
	}
	return sameRecords(want, got, true)
}

// saramaBatches fetches partition p's record batches as stored (Fetch v4
// through sarama's request types), to check what a producer sent: codecs,
// producer ids, sequence numbers.
func saramaBatches(bootstrap, topic string, p int32) ([]*sarama.RecordBatch, error) {
	client, err := sarama.NewClient([]string{bootstrap}, saramaConfig())
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	defer client.Close()
	leader, err := client.Leader(topic, p)
	if err != nil {
		return nil, fmt.Errorf("leader: %w", err)
	}
	var out []*sarama.RecordBatch
	for offset := int64(0); len(out) < 1000; {
		req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 100, MinBytes: 1, MaxBytes: 1 << 20}
		req.AddBlock(topic, p, offset, 1<<20)
		resp, err := leader.Fetch(req)
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		b := resp.GetBlock(topic, p)
		if b == nil || b.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("fetch partition %d at %d: %+v", p, offset, b)
		}
		for _, r := range b.RecordsSet {
			if r.RecordBatch != nil && r.RecordBatch.LastOffset() >= offset {
				out = append(out, r.RecordBatch)
				offset = r.RecordBatch.LastOffset() + 1
			}
		}
		if offset >= b.HighWaterMarkOffset {
			return out, nil
		}
	}
	return nil, fmt.Errorf("partition %d: more than 1000 batches", p)
}

// groupHandler collects the records of a consumer-group session and marks
// each consumed; done is closed once want records arrived.
type groupHandler struct {
	want int
	got  chan rec
	mu   sync.Mutex
	n    int
	done chan struct{}
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.got <- fromSarama(m)
		s.MarkMessage(m, "")
		h.mu.Lock()
		if h.n++; h.n == h.want {
			close(h.done)
		}
		h.mu.Unlock()
	}
	return nil
}

func saramaGroups(bootstrap, topic string, want []rec) error {
	group := topic + "-g"
	cfg := saramaConfig()
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = time.Second
	cg, err := sarama.NewConsumerGroup([]string{bootstrap}, group, cfg)
	if err != nil {
		return fmt.Errorf("new consumer group: %w", err)
	}
	h := &groupHandler{want: len(want), got: make(chan rec, len(want)+100), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()
	select {
	case <-h.done:
	case err := <-consumed:
		cancel()
		cg.Close()
		return fmt.Errorf("consume: %v (read %d of %d)", err, len(h.got), len(want))
	case e := <-cg.Errors():
		cancel()
		cg.Close()
		return fmt.Errorf("consumer group: %v (read %d of %d)", e, len(h.got), len(want))
	case <-time.After(45 * time.Second):
		cancel()
		cg.Close()
		return fmt.Errorf("read %d of %d records in 45 s", len(h.got), len(want))
	}
	// Ending the session commits the marked offsets.
	cancel()
	if err := <-consumed; err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	if err := cg.Close(); err != nil {
		return fmt.Errorf("close group: %w", err)
	}
	close(h.got)
	var got []rec
	for r := range h.got {
		got = append(got, r)
	}
	sort.SliceStable(got, func(i, j int) bool { return got[i].Partition < got[j].Partition })
	if err := sameRecords(want, got, true); err != nil {
		return err
	}
	// The committed offsets, read back by another client: the next offset
	// of every partition.
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		return fmt.Errorf("new admin: %w", err)
	}
	defer admin.Close()
	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
	if err != nil {
		return fmt.Errorf("committed offsets: %w", err)
	}
	for p, n := range countPerPartition(want) {
		b := offsets.GetBlock(topic, p)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset != n {
			return fmt.Errorf("partition %d: committed %+v, want offset %d", p, b, n)
		}
	}
	return nil
}

func saramaAdmin(bootstrap, topic string) error {
	cfg := saramaConfig()
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, cfg)
	if err != nil {
		return fmt.Errorf("new admin: %w", err)
	}
	defer admin.Close()
	name := topic + "-created"
	partitions := func(want int) error {
		md, err := admin.DescribeTopics([]string{name})
		if err != nil {
			return fmt.Errorf("describe topics: %w", err)
		}
		if len(md) != 1 || md[0].Err != sarama.ErrNoError || len(md[0].Partitions) != want {
			return fmt.Errorf("topic %s: metadata %+v, want %d partitions", name, md, want)
		}
		return nil
	}
	if err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	if err := partitions(2); err != nil {
		return err
	}
	if err := admin.CreatePartitions(name, 3, nil, false); err != nil {
		return fmt.Errorf("create partitions: %w", err)
	}
	if err := partitions(3); err != nil {
		return err
	}
	// ClusterAdmin.DescribeConfig sends DescribeConfigs v0, which silt does
	// not serve (nor does Kafka 4.0, KIP-896); sarama's request type also
	// speaks v1, sent here to the controller.
	client, err := sarama.NewClient([]string{bootstrap}, cfg)
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer client.Close()
	controller, err := client.Controller()
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	dc, err := controller.DescribeConfigs(&sarama.DescribeConfigsRequest{
		Version:   1,
		Resources: []*sarama.ConfigResource{{Type: sarama.TopicResource, Name: name}},
	})
	if err != nil {
		return fmt.Errorf("describe configs: %w", err)
	}
	found := false
	for _, r := range dc.Resources {
		if r.ErrorCode != 0 {
			return fmt.Errorf("describe configs: error %d %s", r.ErrorCode, r.ErrorMsg)
		}
		for _, e := range r.Configs {
			found = found || (r.Name == name && e.Name == "retention.ms" && e.Value != "")
		}
	}
	if !found {
		return fmt.Errorf("describe configs: no retention.ms for %s in %+v", name, dc.Resources)
	}
	// Delete records: partition 0's low watermark moves to 6.
	rs := records("admin", 20)
	if err := saramaProduce(cfg, bootstrap, name, rs); err != nil {
		return err
	}
	if err := admin.DeleteRecords(name, map[int32]int64{0: 6}); err != nil {
		return fmt.Errorf("delete records: %w", err)
	}
	if low, err := client.GetOffset(name, 0, sarama.OffsetOldest); err != nil || low != 6 {
		return fmt.Errorf("after delete records to 6: low watermark %d (%v)", low, err)
	}
	if err := admin.DeleteTopic(name); err != nil {
		return fmt.Errorf("delete topic: %w", err)
	}
	return saramaWaitDeleted(admin, name)
}

// saramaWaitDeleted waits until Metadata (v5, without auto-creation) no
// longer knows topic. (ClusterAdmin.ListTopics would also ask for every
// topic's configs with DescribeConfigs v0.)
func saramaWaitDeleted(admin sarama.ClusterAdmin, topic string) error {
	for i := 0; ; i++ {
		md, err := admin.DescribeTopics([]string{topic})
		if err != nil {
			return fmt.Errorf("describe topics: %w", err)
		}
		if len(md) == 1 && md[0].Err == sarama.ErrUnknownTopicOrPartition {
			return nil
		}
		if i == 50 {
			return fmt.Errorf("topic %s still there 10 s after its deletion: %+v", topic, md[0])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// saramaWriteTimed writes five records to partition 0 with the timestamps
// timestampOf(0..4).
func saramaWriteTimed(bootstrap, topic string) error {
	p, err := sarama.NewSyncProducer([]string{bootstrap}, saramaConfig())
	if err != nil {
		return fmt.Errorf("new producer: %w", err)
	}
	var msgs []*sarama.ProducerMessage
	for i, r := range records("timed", 5) {
		r.Partition = 0
		m := toSarama(topic, r)
		m.Timestamp = timestampOf(i)
		msgs = append(msgs, m)
	}
	if err := p.SendMessages(msgs); err != nil {
		p.Close()
		return fmt.Errorf("send: %w", err)
	}
	for i, m := range msgs {
		if m.Offset != int64(i) {
			p.Close()
			return fmt.Errorf("record %d acknowledged at offset %d", i, m.Offset)
		}
	}
	return p.Close()
}

func millis(t time.Time) int64 { return t.UnixNano() / int64(time.Millisecond) }

func saramaOffsetsForTimes(bootstrap, topic string) error {
	if err := saramaWriteTimed(bootstrap, topic); err != nil {
		return err
	}
	client, err := sarama.NewClient([]string{bootstrap}, saramaConfig())
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer client.Close()
	// The first record at or after each time.
	cases := []struct {
		at   time.Time
		want int64
	}{
		{timesBase.Add(-time.Hour), 0},
		{timestampOf(0), 0},
		{timestampOf(2), 2},
		{timestampOf(2).Add(500 * time.Millisecond), 3},
		{timestampOf(4), 4},
		{timestampOf(4).Add(time.Second), -1},
	}
	for _, c := range cases {
		got, err := client.GetOffset(topic, 0, millis(c.at))
		if err != nil {
			return fmt.Errorf("offset for %v: %w", c.at, err)
		}
		if got != c.want {
			return fmt.Errorf("offset for time %d (records at %d..%d, one a second): %d, want %d",
				millis(c.at), millis(timestampOf(0)), millis(timestampOf(4)), got, c.want)
		}
	}
	return nil
}

func saramaProbe(bootstrap, feature, topic string) error {
	cfg := saramaConfig()
	switch feature {
	case "produce", "fetch":
		rs := records(feature, 10)
		if err := saramaProduce(cfg, bootstrap, topic, rs); err != nil {
			return err
		}
		return saramaReadAll(bootstrap, topic, rs)
	case "compression":
		var all []rec
		for _, codec := range []sarama.CompressionCodec{sarama.CompressionGZIP, sarama.CompressionSnappy,
			sarama.CompressionLZ4, sarama.CompressionZSTD} {
			c := saramaConfig()
			c.Producer.Compression = codec
			rs := records(codec.String(), 10)
			if err := saramaProduce(c, bootstrap, topic, rs); err != nil {
				return fmt.Errorf("%s: %w", codec, err)
			}
			all = append(all, rs...)
		}
		if err := saramaReadAll(bootstrap, topic, all); err != nil {
			return err
		}
		// Each codec's batches are stored as sent, compressed.
		seen := map[sarama.CompressionCodec]int{}
		for _, p := range []int32{0, 1} {
			batches, err := saramaBatches(bootstrap, topic, p)
			if err != nil {
				return err
			}
			for _, b := range batches {
				seen[b.Codec] += len(b.Records)
			}
		}
		if len(seen) != 4 || seen[sarama.CompressionNone] != 0 {
			return fmt.Errorf("stored batches per codec: %v, want 10 records of each of gzip, snappy, lz4, zstd", seen)
		}
		for codec, n := range seen {
			if n != 10 {
				return fmt.Errorf("stored batches per codec: %v: %d records of %s, want 10", seen, n, codec)
			}
		}
		return nil
	case "groups":
		rs := records(feature, 10)
		if err := saramaProduce(cfg, bootstrap, topic, rs); err != nil {
			return err
		}
		return saramaGroups(bootstrap, topic, rs)
	case "idempotence":
		cfg.Producer.Idempotent = true
		cfg.Net.MaxOpenRequests = 1
		cfg.Producer.Retry.Max = 5
		rs := records(feature, 10)
		if err := saramaProduce(cfg, bootstrap, topic, rs); err != nil {
			return err
		}
		if err := saramaReadAll(bootstrap, topic, rs); err != nil {
			return err
		}
		// Stored with the producer id silt assigned and the producer's
		// sequence numbers, from 0 in each partition.
		var pid int64 = -1
		for _, p := range []int32{0, 1} {
			batches, err := saramaBatches(bootstrap, topic, p)
			if err != nil {
				return err
			}
			seq := int32(0)
			for _, b := range batches {
				if b.ProducerID < 0 || (pid >= 0 && b.ProducerID != pid) || b.FirstSequence != seq {
					return fmt.Errorf("partition %d: batch of producer %d epoch %d, first sequence %d; want one producer id, sequence %d",
						p, b.ProducerID, b.ProducerEpoch, b.FirstSequence, seq)
				}
				pid = b.ProducerID
				seq += int32(len(b.Records))
			}
			if seq != 5 {
				return fmt.Errorf("partition %d: %d records in idempotent batches, want 5", p, seq)
			}
		}
		return nil
	case "admin":
		return saramaAdmin(bootstrap, topic)
	case "offsets_for_times":
		return saramaOffsetsForTimes(bootstrap, topic)
	}
	return fmt.Errorf("unknown feature %q", feature)
}
