/** The dependency rule of docs/architecture.md: domain ← application ← infrastructure ← apps. No exceptions list. */
module.exports = {
  forbidden: [
    {
      name: 'domain-is-pure',
      comment: 'The domain imports nothing but itself.',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { pathNot: '^src/domain/' },
    },
    {
      name: 'contracts-are-pure',
      comment: 'Wire contracts import nothing but themselves.',
      severity: 'error',
      from: { path: '^src/contracts/' },
      to: { pathNot: '^src/contracts/' },
    },
    {
      name: 'application-depends-inward',
      comment: 'Use cases see only the domain and the contracts: no drivers, frameworks or adapters.',
      severity: 'error',
      from: { path: '^src/application/' },
      to: { pathNot: '^src/(application|domain|contracts)/' },
    },
    {
      name: 'infrastructure-never-imports-apps',
      comment:
        'Adapters are handed their settings by the composition roots; they never read the configuration.',
      severity: 'error',
      from: { path: '^src/infrastructure/' },
      to: { path: '^src/(apps/|main\\.ts|all-roles\\.ts|config\\.ts)' },
    },
    {
      name: 'apps-are-independent',
      comment: 'Each app is its own composition root; shared code lives in a lower layer.',
      severity: 'error',
      from: { path: '^src/apps/([^/]+)/' },
      to: { path: '^src/apps/', pathNot: '^src/apps/$1/' },
    },
    {
      name: 'packages-are-self-contained',
      comment: 'Libraries under packages/ know nothing of the app.',
      severity: 'error',
      from: { path: '^packages/' },
      to: { path: '^src/' },
    },
    {
      name: 'no-circular',
      comment: 'Runtime import cycles only: a type-only cycle (an aggregate and its events) costs nothing.',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
