/**
 * llama.cpp's binaries for the tests that run them in process. Where they are missing (no `npx sollol-agent
 * setup` yet) those tests skip and say why, unless SOLLOL_REQUIRE_LLAMA=1 (the full run, after setup) makes
 * that a failure.
 */
import { resolveBinaries, type LlamaBinaries } from '@sollol/llama-cpp'

export async function binariesForTests(): Promise<{ binaries?: LlamaBinaries; missing?: string }> {
  try {
    return { binaries: await resolveBinaries({ allowBuild: false }) }
  } catch (err) {
    if (process.env.SOLLOL_REQUIRE_LLAMA === '1') throw err
    return { missing: (err as Error).message }
  }
}
