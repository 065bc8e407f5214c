// The hostile-input suite (issue 8): property-based tests over every endpoint and every message consumer, in one
// process so its closing line adds up every part. HOSTILE_SEED=<n> replays a run, HOSTILE_RUNS_FACTOR=<k> tries k
// times as many inputs, HOSTILE_ONLY=webapi|notifications|signalr|consumers runs one part.
import { after } from 'node:test';
import { needsRabbitMq } from '../support/services.ts';
import { describeConsumerHostility } from './consumers.hostile.ts';
import { describeNotificationsHostility } from './notifications.hostile.ts';
import { describeSignalRHostility } from './signalr.hostile.ts';
import { SEED, summary } from './tally.ts';
import { describeWebApiHostility } from './webapi.hostile.ts';

console.log(`hostile input: seed ${SEED} (HOSTILE_SEED=${SEED} replays this run)`);

const only = process.env.HOSTILE_ONLY;
if (!only || only === 'webapi') describeWebApiHostility();
if (!only || only === 'notifications') describeNotificationsHostility();
if (!only || only === 'signalr') describeSignalRHostility();
if (!only || only === 'consumers') describeConsumerHostility(await needsRabbitMq());

after(() => console.log(summary()));
