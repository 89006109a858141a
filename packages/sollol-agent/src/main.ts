/**
 * The `sollol-agent` command line. Every command's errors come back here and become one line on stderr
 * and a documented exit code (see errors.ts and the README).
 */
import { Command, CommanderError, Option } from 'commander'
import type { Logger as PinoLogger } from 'pino'
import { createLogger, LOG_LEVELS, type LogLevel } from './logger.js'
import { ExitCode, exitCodeFor, isExpected } from './errors.js'
import { oneOf } from './options.js'
import { registerModelInfo } from './commands/model-info.js'
import { registerModels } from './commands/models.js'
import { registerProbe } from './commands/probe.js'
import { registerSetup } from './commands/setup.js'
import { registerStart } from './commands/start.js'
import { registerStatus } from './commands/status.js'
import { registerPlan } from './commands/plan.js'
import { registerDemo } from './commands/demo.js'
import { registerKeygen } from './commands/keygen.js'
import { applyConfig, configPathFrom, readConfigFile, SollolCommand } from './config.js'
import { registerTestModel } from './commands/test-model.js'
import { AGENT_VERSION } from './version.js'

export function buildProgram(getLog: () => PinoLogger): Command {
  const program = new SollolCommand()
    .name('sollol-agent')
    .description('Run one large language model across all the machines of a LAN with llama.cpp RPC.')
    .version(AGENT_VERSION)
    .addOption(
      new Option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')}`).argParser(oneOf('--log-level', LOG_LEVELS)).default('info')
    )
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
  registerStart(program, getLog)
  registerSetup(program, getLog)
  registerTestModel(program)
  registerModelInfo(program)
  registerModels(program)
  registerProbe(program)
  registerStatus(program)
  registerPlan(program)
  registerKeygen(program)
  registerDemo(program, getLog)
  program.option('--config <file>', 'JSON file of option values (default: $XDG_CONFIG_HOME/sollol-agent/config.json)')
  for (const command of [program, ...program.commands]) {
    command.exitOverride()
  }
  return program
}

export async function main(argv: readonly string[]): Promise<number> {
  let log: PinoLogger | undefined
  const getLog = (): PinoLogger => {
    log ??= createLogger(program.opts<{ logLevel?: LogLevel }>().logLevel ?? 'info')
    return log
  }
  // getLog runs only after parsing has begun, when `program` is set.
  const program = buildProgram(getLog)
  try {
    const config = configPathFrom(argv.slice(2))
    applyConfig(program, readConfigFile(config.path, config.explicit), config.path)
    await program.parseAsync([...argv])
    return ExitCode.OK
  } catch (err) {
    if (err instanceof CommanderError) return exitCodeFor(err) // commander already printed its message
    const message = err instanceof Error ? err.message : String(err)
    process.stderr.write(`sollol-agent: ${message}\n`)
    if (!isExpected(err)) getLog().debug({ err }, 'unexpected error')
    return exitCodeFor(err)
  }
}
