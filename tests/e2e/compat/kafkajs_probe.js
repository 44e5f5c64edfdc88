// Probes one kafkajs feature against a broker; prints {"ok": bool, "why": str}.
// Usage: node kafkajs_probe.js BOOTSTRAP FEATURE TOPIC
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const [bootstrap, feature, topic] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'silt-compat', brokers: [bootstrap], logLevel: logLevel.NOTHING });

async function produce(n, opts = {}) {
  const producer = kafka.producer(opts.producer || {});
  await producer.connect();
  const messages = Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: `v${i}`, headers: { h: 'x' } }));
  await producer.send({ topic, messages, acks: -1, compression: opts.compression });
  await producer.disconnect();
}

async function consumeAll(n, groupId) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, rebalanceTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${seen.length} of ${n} in 30 s`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message.value.toString());
        if (seen.length >= n) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  return seen;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  switch (feature) {
    case 'produce':
      await produce(10);
      break;
    case 'fetch': {
      await produce(10);
      const seen = await consumeAll(10, `${topic}-g`);
      if (seen.length !== 10) throw new Error(`read ${seen.length} records`);
      break;
    }
    case 'compression': {
      await produce(10, { compression: CompressionTypes.GZIP });
      const seen = await consumeAll(10, `${topic}-g`);
      if (seen.length !== 10) throw new Error(`read ${seen.length} records`);
      break;
    }
    case 'groups': {
      await produce(20);
      const seen = await consumeAll(20, `${topic}-g`);
      const offsets = await admin.fetchOffsets({ groupId: `${topic}-g`, topics: [topic] });
      const committed = offsets[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
      if (seen.length !== 20 || committed !== 20) throw new Error(`read ${seen.length}, committed ${committed}`);
      break;
    }
    case 'idempotence':
      await produce(10, { producer: { idempotent: true, maxInFlightRequests: 1 } });
      break;
    case 'admin': {
      await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      if (md.topics[0].partitions.length !== 3) throw new Error('partitions not added');
      const cfg = await admin.describeConfigs({ resources: [{ type: 2, name: topic }], includeSynonyms: false });
      if (!cfg.resources[0].configEntries.some((e) => e.configName === 'retention.ms')) throw new Error('no retention.ms');
      await produce(10);
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '-1' }] });
      const low = await admin.fetchTopicOffsets(topic);
      if (low[0].low !== low[0].high) throw new Error(`delete records left ${JSON.stringify(low[0])}`);
      await admin.deleteTopics({ topics: [topic] });
      break;
    }
    case 'transactions': {
      // Committed c0..c5, aborted a0..a3; the test reads them back read_committed.
      const producer = kafka.producer({ transactionalId: `${topic}-tx`, idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      let txn = await producer.transaction();
      await txn.send({ topic, messages: Array.from({ length: 6 }, (_, i) => ({ value: `c${i}`, partition: i % 2 })) });
      await txn.commit();
      txn = await producer.transaction();
      await txn.send({ topic, messages: Array.from({ length: 4 }, (_, i) => ({ value: `a${i}`, partition: i % 2 })) });
      await txn.abort();
      await producer.disconnect();
      break;
    }
    case 'offsets_for_times': {
      await produce(10);
      const res = await admin.fetchTopicOffsetsByTimestamp(topic, Date.now() - 60000);
      if (res.length !== 2 || res.some((p) => Number(p.offset) !== 0)) throw new Error(JSON.stringify(res));
      break;
    }
    default:
      throw new Error(`unknown feature ${feature}`);
  }
  await admin.disconnect();
}

main().then(
  () => { console.log(JSON.stringify({ ok: true, why: '' })); process.exit(0); },
  (e) => { console.log(JSON.stringify({ ok: false, why: String(e && e.message || e) })); process.exit(0); },
);
