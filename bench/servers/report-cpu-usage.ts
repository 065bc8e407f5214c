// Preloaded into every benchmark server (child-server.ts): answers the parent's 'cpu-usage' with the process's own
// CPU time. What a server spends per request, unlike its throughput, does not depend on how the load generator
// shares the machine's cores with it.
process.on('message', (message) => {
  if (message === 'cpu-usage') process.send?.(process.cpuUsage());
});
// The channel must not keep a server alive that would otherwise exit.
process.channel?.unref();
