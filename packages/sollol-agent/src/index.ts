/**
 * sollol-agent: the command line and, as a library, the pieces it is built from.
 *
 * @example
 * ```sh
 * npx sollol-agent setup                  # find or build llama.cpp
 * npx sollol-agent test-model --out m.gguf
 * npx sollol-agent                        # run the agent
 * ```
 */
export { main, buildProgram } from './main.js'
export { ExitCode } from './errors.js'
export { AGENT_VERSION } from './version.js'
