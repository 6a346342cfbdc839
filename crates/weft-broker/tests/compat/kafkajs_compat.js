// kafkajs against a running Weft broker: admin, idempotent produce with all five codecs
// (none and gzip, which kafkajs ships; snappy through the kafkajs-snappy codec package; lz4
// and zstd through small adapters below over the pure-JS lz4js and zstd-codec packages, as
// @kafkajs/zstd does not build on Node 20), offsets by time,
// DeleteRecords, configs, invalid names, and group consumers reading back `js-none`,
// `js-lz4` and `js-zstd`.
// kafkajs consumes only through consumer groups; the Rust side (tests/kafkajs.rs) also
// checks every codec's topic with librdkafka.
//
// Run as `node kafkajs_compat.js <bootstrap>`; exits non-zero on the first failed check.
const { Kafka, CompressionTypes, CompressionCodecs, logLevel, ConfigResourceTypes } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')

const lz4js = require('lz4js')
const { ZstdCodec } = require('zstd-codec')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
// Kafka's LZ4 is the LZ4 frame format, which lz4js reads and writes.
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress (encoder) { return Buffer.from(lz4js.compress(encoder.buffer)) },
  async decompress (buffer) { return Buffer.from(lz4js.decompress(buffer)) }
})
// zstd-codec initialises its WebAssembly module asynchronously, once.
const zstd = new Promise(resolve => ZstdCodec.run(z => resolve(z)))
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress (encoder) {
    const z = await zstd
    return Buffer.from(new z.Simple().compress(encoder.buffer, 3))
  },
  async decompress (buffer) {
    const z = await zstd
    // Streaming also reads frames that do not state their content size.
    const out = new z.Streaming().decompress(buffer)
    if (!out) throw new Error('zstd: cannot decompress')
    return Buffer.from(out)
  }
})

const bootstrap = process.argv[2]
const N = 20000
const KEYS = 59
const kafka = new Kafka({ clientId: 'weft-compat', brokers: [bootstrap], logLevel: logLevel.ERROR })

function check (cond, what) {
  if (!cond) throw new Error(what)
}

async function codecs (admin) {
  for (const [name, codec] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP], ['snappy', CompressionTypes.Snappy], ['lz4', CompressionTypes.LZ4], ['zstd', CompressionTypes.ZSTD]]) {
    const topic = `js-${name}`
    await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true })
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
    await producer.connect()
    for (let start = 0; start < N; start += 1000) {
      const messages = []
      for (let i = start; i < start + 1000; i++) {
        messages.push({ key: `k${i % KEYS}`, value: `${Math.floor(i / KEYS)}` })
      }
      await producer.send({ topic, compression: codec, messages, acks: -1 })
    }
    await producer.disconnect()
    console.log(`codec ${name}: ${N} records produced`)
  }
}

async function timesAndDeleteRecords (admin) {
  const topic = 'js-times'
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const base = 1700000000000
  const messages = []
  for (let i = 0; i < 10; i++) messages.push({ key: 'k', value: `${i}`, partition: 0, timestamp: `${base + i * 1000}` })
  await producer.send({ topic, messages, acks: -1 })
  await producer.disconnect()
  for (const [ts, want] of [[base, '0'], [base + 2500, '3'], [base + 9000, '9']]) {
    const got = await admin.fetchTopicOffsetsByTimestamp(topic, ts)
    check(got[0].offset === want, `offset for ${ts}: ${JSON.stringify(got)}, want ${want}`)
  }
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }] })
  const offsets = await admin.fetchTopicOffsets(topic)
  check(offsets[0].low === '4' && offsets[0].high === '10', `watermarks after DeleteRecords: ${JSON.stringify(offsets)}`)
  console.log('offsets by time and DeleteRecords ok')
}

async function configs (admin) {
  const topic = 'js-configs'
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true })
  await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] })
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  check(md.topics[0].partitions.length === 3, `partitions: ${JSON.stringify(md)}`)
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '12345' }] }]
  })
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }]
  })
  const entries = described.resources[0].configEntries
  const retention = entries.find(e => e.configName === 'retention.ms')
  check(retention && retention.configValue === '12345', `retention.ms read back: ${JSON.stringify(retention)}`)
  check(entries.some(e => e.configName === 'cleanup.policy'), 'every config listed')
  console.log('configs ok')
}

async function invalidNames (admin) {
  let refused = null
  try {
    await admin.createTopics({ topics: [{ topic: 'bad name!', numPartitions: 1, replicationFactor: 1 }] })
  } catch (e) {
    refused = e
  }
  const text = refused ? JSON.stringify(refused.errors || refused.message) + refused.message : ''
  check(refused && /INVALID_TOPIC_EXCEPTION|invalid/i.test(text), `invalid topic name accepted: ${text}`)
  console.log('invalid names ok')
}

async function groupConsume (topic) {
  const consumer = kafka.consumer({ groupId: `${topic}-group` })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const perKey = new Map()
  let n = 0
  let done
  const all = new Promise(resolve => { done = resolve })
  await consumer.run({
    eachMessage: async ({ message }) => {
      const key = Number(message.key.toString().slice(1))
      if (!perKey.has(key)) perKey.set(key, [])
      perKey.get(key).push(Number(message.value.toString()))
      n++
      if (n === N) done()
    }
  })
  const hang = setTimeout(() => { console.error(`group ${topic}: consumed ${n} of ${N}`); process.exit(1) }, 180000)
  await all
  clearTimeout(hang)
  await consumer.disconnect()
  check(n === N, `group: ${n} records, want ${N}`)
  check(perKey.size === KEYS, `group: ${perKey.size} keys`)
  for (const [key, seqs] of perKey) {
    const want = Math.ceil((N - key) / KEYS)
    check(seqs.length === want && seqs.every((s, i) => s === i), `group: key ${key}: order or exactly-once broken`)
  }
  console.log(`group consumer ${topic}: ${N} records ok`)
}

async function main () {
  const admin = kafka.admin()
  await admin.connect()
  await codecs(admin)
  await timesAndDeleteRecords(admin)
  await configs(admin)
  await invalidNames(admin)
  await admin.disconnect()
  // kafkajs decompresses what it produced: plain, and the two codecs of the adapters.
  for (const topic of ['js-none', 'js-lz4', 'js-zstd']) await groupConsume(topic)
}

main().catch(e => {
  console.error(e)
  process.exit(1)
})
