package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/Shopify/sarama"
	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/gzip"
	"github.com/segmentio/kafka-go/lz4"
	"github.com/segmentio/kafka-go/snappy"
)

// kafka-go 0.2.1 (Debian's) speaks fixed request versions and message
// format v1 (no headers, no producer ids): Produce v2, Fetch v2,
// ListOffsets v1, Metadata v1, CreateTopics v0, DeleteTopics v1, and the
// group APIs. Where a feature needs records kafka-go cannot write, sarama
// writes them; where kafka-go has no call to read a result back (committed
// offsets, the topic list), sarama reads it.

// byKey sends record k<i> to partition i % 2, as records() assigns them.
var byKey = kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int {
	i, err := strconv.Atoi(strings.TrimPrefix(string(m.Key), "k"))
	if err != nil {
		return partitions[0]
	}
	return partitions[i%len(partitions)]
})

func kafkaGoWrite(bootstrap, topic string, codec kafka.CompressionCodec, rs []rec) error {
	w := kafka.NewWriter(kafka.WriterConfig{
		Brokers:          []string{bootstrap},
		Topic:            topic,
		Balancer:         byKey,
		RequiredAcks:     -1,
		BatchTimeout:     10 * time.Millisecond,
		MaxAttempts:      3,
		CompressionCodec: codec,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := make([]kafka.Message, len(rs))
	for i, r := range rs {
		msgs[i] = kafka.Message{Key: r.Key, Value: r.Value}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		w.Close()
		return fmt.Errorf("write: %w", err)
	}
	return w.Close()
}

func fromKafkaGo(m kafka.Message) rec {
	return rec{Partition: int32(m.Partition), Offset: m.Offset, Key: m.Key, Value: m.Value}
}

// kafkaGoReadAll reads each partition of want from its first offset with a
// partition Reader and compares (no headers: message format v1 has none).
func kafkaGoReadAll(bootstrap, topic string, want []rec) error {
	var got []rec
	for p, n := range countPerPartition(want) {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{bootstrap}, Topic: topic, Partition: int(p),
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond,
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			r.Close()
			return fmt.Errorf("seek partition %d: %w", p, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		for i := int64(0); i < n; i++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				cancel()
				r.Close()
				return fmt.Errorf("partition %d: read %d of %d records: %w", p, i, n, err)
			}
			got = append(got, fromKafkaGo(m))
		}
		cancel()
		r.Close()
		conn, err := kafka.DialLeader(context.Background(), "tcp", bootstrap, topic, int(p))
		if err != nil {
			return fmt.Errorf("dial leader of partition %d: %w", p, err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil || last != got[len(got)-1].Offset+1 {
			return fmt.Errorf("partition %d: high watermark %d (%v) after the last record read at %d", p, last, err, got[len(got)-1].Offset)
		}
	}
	return sameRecords(want, got, false)
}

func kafkaGoGroups(bootstrap, topic string, want []rec) error {
	group := topic + "-g"
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{bootstrap}, GroupID: group, Topic: topic,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond,
		SessionTimeout: 10 * time.Second, HeartbeatInterval: time.Second,
		RetentionTime: 24 * time.Hour,
	})
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		r.Close()
		return fmt.Errorf("new admin: %w", err)
	}
	defer admin.Close()
	// The reader joins in the background: the group becomes stable with it
	// as the one member, assigned both partitions.
	for i := 0; ; i++ {
		err := kafkaGoGroupStable(admin, group, topic)
		if err == nil {
			break
		}
		if i == 50 {
			r.Close()
			return fmt.Errorf("group not joined in 10 s: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []rec
	for len(got) < len(want) {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			r.Close()
			return fmt.Errorf("read %d of %d records: %w", len(got), len(want), err)
		}
		got = append(got, fromKafkaGo(m))
		if err := r.CommitMessages(ctx, m); err != nil {
			r.Close()
			return fmt.Errorf("commit: %w", err)
		}
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("close reader: %w", err)
	}
	// Per partition, in the order read.
	var ordered []rec
	for _, p := range []int32{0, 1} {
		for _, g := range got {
			if g.Partition == p {
				ordered = append(ordered, g)
			}
		}
	}
	if err := sameRecords(want, ordered, false); err != nil {
		return err
	}
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

// kafkaGoGroupStable checks that group is stable with one member, which is
// assigned partitions 0 and 1 of topic.
func kafkaGoGroupStable(admin sarama.ClusterAdmin, group, topic string) error {
	groups, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return err
	}
	if len(groups) != 1 || groups[0].Err != sarama.ErrNoError || groups[0].State != "Stable" || len(groups[0].Members) != 1 {
		return fmt.Errorf("group %+v", groups)
	}
	for id, m := range groups[0].Members {
		a, err := m.GetMemberAssignment()
		if err != nil {
			return fmt.Errorf("member %s: assignment: %w", id, err)
		}
		if ps := a.Topics[topic]; len(ps) != 2 || ps[0]+ps[1] != 1 {
			return fmt.Errorf("member %s: assigned %v", id, a.Topics)
		}
	}
	return nil
}

// kafkaGoAdmin runs kafka-go's two admin calls: DeleteTopics, then
// CreateTopics.
func kafkaGoAdmin(bootstrap, topic string) error {
	conn, err := kafka.Dial("tcp", bootstrap)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		return fmt.Errorf("new admin: %w", err)
	}
	defer admin.Close()
	if err := conn.DeleteTopics(topic); err != nil {
		return fmt.Errorf("delete topic: %w", err)
	}
	if err := saramaWaitDeleted(admin, topic); err != nil {
		return err
	}
	name := topic + "-created"
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := conn.CreateTopics(kafka.TopicConfig{Topic: name, NumPartitions: 3, ReplicationFactor: 1}); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	md, err := admin.DescribeTopics([]string{name})
	if err != nil {
		return fmt.Errorf("describe topics: %w", err)
	}
	if len(md) != 1 || md[0].Err != sarama.ErrNoError || len(md[0].Partitions) != 3 {
		return fmt.Errorf("created topic %s: metadata %+v, want 3 partitions", name, md)
	}
	return nil
}

// writeTimedBatch writes records timed-v0..4 at timestampOf(0..4) to
// partition 0 as one batch whose header carries its maximum timestamp, as
// Kafka's own producers write it. (sarama 1.22's producer leaves the
// header's maximum timestamp at -1, so it is sent here through sarama's
// request types.)
func writeTimedBatch(bootstrap, topic string) error {
	client, err := sarama.NewClient([]string{bootstrap}, saramaConfig())
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer client.Close()
	leader, err := client.Leader(topic, 0)
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	batch := &sarama.RecordBatch{
		Version: 2, FirstTimestamp: timestampOf(0), MaxTimestamp: timestampOf(4), LastOffsetDelta: 4,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
	}
	for i, r := range records("timed", 5) {
		batch.Records = append(batch.Records, &sarama.Record{
			OffsetDelta: int64(i), TimestampDelta: timestampOf(i).Sub(timestampOf(0)), Key: r.Key, Value: r.Value,
		})
	}
	req := &sarama.ProduceRequest{Version: 3, RequiredAcks: sarama.WaitForAll, Timeout: 30000}
	req.AddBatch(topic, 0, batch)
	resp, err := leader.Produce(req)
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if b := resp.GetBlock(topic, 0); b == nil || b.Err != sarama.ErrNoError || b.Offset != 0 {
		return fmt.Errorf("produce: answered %+v, want offset 0", b)
	}
	return nil
}

func kafkaGoOffsetsForTimes(bootstrap, topic string) error {
	if err := writeTimedBatch(bootstrap, topic); err != nil {
		return fmt.Errorf("writing the records with sarama: %w", err)
	}
	conn, err := kafka.DialLeader(context.Background(), "tcp", bootstrap, topic, 0)
	if err != nil {
		return fmt.Errorf("dial leader: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if first, last, err := conn.ReadOffsets(); err != nil || first != 0 || last != 5 {
		return fmt.Errorf("first and last offsets %d, %d (%v), want 0, 5", first, last, err)
	}
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
		got, err := conn.ReadOffset(c.at)
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

func kafkaGoProbe(bootstrap, feature, topic string) error {
	switch feature {
	case "produce":
		rs := records(feature, 10)
		if err := kafkaGoWrite(bootstrap, topic, nil, rs); err != nil {
			return err
		}
		return kafkaGoReadAll(bootstrap, topic, rs)
	case "fetch":
		rs := records(feature, 10)
		if err := saramaProduce(saramaConfig(), bootstrap, topic, rs); err != nil {
			return fmt.Errorf("writing the records with sarama: %w", err)
		}
		return kafkaGoReadAll(bootstrap, topic, rs)
	case "compression":
		var all []rec
		for _, codec := range []kafka.CompressionCodec{gzip.NewCompressionCodec(), snappy.NewCompressionCodec(),
			lz4.NewCompressionCodec()} {
			rs := records(fmt.Sprintf("codec%d", codec.Code()), 10)
			if err := kafkaGoWrite(bootstrap, topic, codec, rs); err != nil {
				return fmt.Errorf("codec %d: %w", codec.Code(), err)
			}
			all = append(all, rs...)
		}
		return kafkaGoReadAll(bootstrap, topic, all)
	case "groups":
		rs := records(feature, 10)
		if err := saramaProduce(saramaConfig(), bootstrap, topic, rs); err != nil {
			return fmt.Errorf("writing the records with sarama: %w", err)
		}
		return kafkaGoGroups(bootstrap, topic, rs)
	case "admin":
		return kafkaGoAdmin(bootstrap, topic)
	case "offsets_for_times":
		return kafkaGoOffsetsForTimes(bootstrap, topic)
	}
	return fmt.Errorf("kafka-go has no %q feature here", feature)
}
