// A kafkajs consumer-group member for tests/group_churn.rs.
//
// Consumes CHURN_TOPIC in group CHURN_GROUP until stdin closes, appending one line per event
// to CHURN_OUT (format in group_churn.rs). kafkajs has no revocation callback and no
// cooperative protocol: every rebalance is eager, so a REBALANCING event logs the revocation
// of everything held and GROUP_JOIN logs the whole new assignment. kafkajs commits offsets
// of messages whose eachMessage finished (at-least-once); the line is written first.
const fs = require('fs')
const { Kafka, logLevel, AssignerProtocol } = require('kafkajs')

const env = (name) => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set`)
  return v
}

const out = fs.openSync(env('CHURN_OUT'), 'a')
const { performance } = require('perf_hooks')
const nowUs = () => Math.floor((performance.timeOrigin + performance.now()) * 1000)
const event = (line) => fs.writeSync(out, line + '\n')
const plist = (ps) => (ps.length ? [...ps].sort((a, b) => a - b).join(',') : '-')

const topic = env('CHURN_TOPIC')
let held = []

async function main () {
  event(`S ${nowUs()}`)
  const kafka = new Kafka({
    clientId: env('CHURN_CLIENT'),
    brokers: [env('CHURN_BOOTSTRAP')],
    logLevel: logLevel.WARN,
    retry: { initialRetryTime: 50, maxRetryTime: 500, retries: 100 }
  })
  const strategy = env('CHURN_STRATEGY')
  if (strategy !== 'roundrobin') throw new Error(`kafkajs has only roundrobin, not ${strategy}`)
  const consumer = kafka.consumer({
    groupId: env('CHURN_GROUP'),
    sessionTimeout: Number(env('CHURN_SESSION_MS')),
    heartbeatInterval: 500,
    rebalanceTimeout: 30000
  })
  const revokeAll = () => {
    if (held.length) {
      event(`V ${nowUs()} ${plist(held)}`)
      held = []
    }
  }
  consumer.on(consumer.events.REBALANCING, revokeAll)
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    revokeAll()
    held = e.payload.memberAssignment[topic] || []
    event(`A ${nowUs()} ${plist(held)}`)
  })
  consumer.on(consumer.events.CRASH, (e) => {
    process.stderr.write(`crash: ${e.payload.error}\n`)
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      const key = message.key.toString()
      const seq = message.value.toString().split(':').pop()
      event(`R ${nowUs()} ${partition} ${message.offset} ${key} ${seq}`)
    }
  })
  await new Promise((resolve) => {
    process.stdin.on('data', () => {})
    process.stdin.on('end', resolve)
    process.stdin.on('close', resolve)
  })
  await consumer.stop()
  revokeAll()
  await consumer.disconnect()
  event(`E ${nowUs()}`)
  process.exit(0)
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`)
  process.exit(1)
})
