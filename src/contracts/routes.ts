// HTTP paths shared with the original .NET demo.

export const Routes = {
  students: '/api/students',
  /** The original's singular paths, kept as aliases. */
  studentsAlias: '/api/student',
  health: '/health',
  healthReady: '/health/ready',
  healthLive: '/health/live',
  openApi: '/openapi.json',
  docs: '/docs',
} as const;
