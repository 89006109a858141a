import { writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { clusterKeyFingerprint, generateClusterKey, parseClusterKey } from '@sollol/mesh'
import { UsageError } from '../errors.js'

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('write a new cluster key: start every agent with --cluster-key FILE to make the cluster private')
    .requiredOption('--out <file>', 'where to write the key (created with mode 0600)')
    .option('--force', 'overwrite an existing file')
    .action(async (o: { out: string; force?: boolean }) => {
      const text = generateClusterKey()
      try {
        await writeFile(o.out, text, { mode: 0o600, flag: o.force === true ? 'w' : 'wx' })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST')
          throw new UsageError(`Expected --out to name a new file, got \`${o.out}\` which exists (use --force to replace it)`)
        throw err
      }
      process.stdout.write(
        `wrote cluster key ${o.out} (fingerprint ${clusterKeyFingerprint(parseClusterKey(text, o.out))}); copy it to every machine of the cluster\n`
      )
    })
}
