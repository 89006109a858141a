#!/usr/bin/env node
// The published entry point: everything else is compiled TypeScript in dist/.
import { main } from '../dist/main.js'

process.exitCode = await main(process.argv)
