import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyConfig, configPathFrom, envName, readConfigFile, SollolCommand } from './config.js'
import { integer } from './options.js'

function program(): { program: SollolCommand; seen: () => Record<string, unknown> } {
  let seen: Record<string, unknown> = {}
  const p = new SollolCommand().exitOverride()
  p.command('start')
    .exitOverride()
    .option('--rpc-port <port>', 'port', integer('--rpc-port', 1, 65535), 50052)
    .option('--cluster <name>', 'cluster', 'default')
    .option('--no-mdns', 'no mdns')
    .action((flags: Record<string, unknown>) => {
      seen = flags
    })
  return { program: p, seen: () => seen }
}

test('flags beat the environment, which beats the config file, which beats the defaults', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-config-'))
  const saved = { ...process.env }
  try {
    const file = join(dir, 'config.json')
    writeFileSync(file, JSON.stringify({ rpcPort: 6000, cluster: 'lab', mdns: false }))
    const run = async (argv: string[], env: Record<string, string>): Promise<Record<string, unknown>> => {
      for (const key of Object.keys(process.env)) if (key.startsWith('SOLLOL_')) delete process.env[key]
      Object.assign(process.env, env)
      const { program: p, seen } = program()
      applyConfig(p, readConfigFile(file, true), file)
      await p.parseAsync(['node', 'x', 'start', ...argv])
      return seen()
    }
    assert.deepEqual(await run([], {}), { rpcPort: 6000, cluster: 'lab', mdns: false })
    assert.deepEqual(await run([], { SOLLOL_RPC_PORT: '7000' }), { rpcPort: 7000, cluster: 'lab', mdns: false })
    assert.deepEqual(await run(['--rpc-port', '8000'], { SOLLOL_RPC_PORT: '7000' }), { rpcPort: 8000, cluster: 'lab', mdns: false })
    // without a config file or environment: the built-in defaults
    for (const key of Object.keys(process.env)) if (key.startsWith('SOLLOL_')) delete process.env[key]
    const { program: p, seen } = program()
    await p.parseAsync(['node', 'x', 'start'])
    assert.deepEqual(seen(), { rpcPort: 50052, cluster: 'default', mdns: true })
  } finally {
    process.env = saved
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a bad config value or an unknown key is one line naming the file and the option', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-config-'))
  try {
    const file = join(dir, 'config.json')
    writeFileSync(file, JSON.stringify({ rpcPort: 'abc' }))
    assert.throws(
      () => applyConfig(program().program, readConfigFile(file, true), file),
      /config\.json: Expected --rpc-port to be an integer 1-65535, got `abc`/
    )
    writeFileSync(file, JSON.stringify({ rpcprot: 1 }))
    assert.throws(() => applyConfig(program().program, readConfigFile(file, true), file), /Unknown option `rpcprot`/)
    writeFileSync(file, '{ not json')
    assert.throws(() => readConfigFile(file, true), /Expected .*config\.json to be JSON/)
    assert.throws(() => readConfigFile(join(dir, 'missing.json'), true), /Expected a config file at/)
    assert.deepEqual(readConfigFile(join(dir, 'missing.json'), false), {})
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the config path comes from --config, then SOLLOL_CONFIG, then the XDG default', () => {
  assert.deepEqual(configPathFrom(['start', '--config', '/a.json'], {}), { path: '/a.json', explicit: true })
  assert.deepEqual(configPathFrom(['--config=/b.json'], {}), { path: '/b.json', explicit: true })
  assert.deepEqual(configPathFrom([], { SOLLOL_CONFIG: '/c.json' }), { path: '/c.json', explicit: true })
  assert.deepEqual(configPathFrom([], { XDG_CONFIG_HOME: '/x' }), { path: '/x/sollol-agent/config.json', explicit: false })
  assert.equal(envName('--rpc-port'), 'SOLLOL_RPC_PORT')
  assert.equal(envName('--no-mdns'), 'SOLLOL_MDNS')
})
