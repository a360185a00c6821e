/**
 * Projects and deployments: the config, `multirank build`'s artifact, and
 * deploying it to a multirank server. Re-exports only.
 */
export { buildProject, type BuildOptions, type BuildResult } from "./build.js";
export { deleteDeployment, deployArtifact, deploymentInfo, listDeployments, rollbackDeployment, type BuildLogLine, type DeployTarget } from "./client.js";
export type { DeployResult, DeploymentInfo, RevisionInfo } from "./deployments.js";
export type { Manifest, ManifestEntry } from "./manifest.js";
export { defineConfig, findProjectConfig, loadProject, PROJECT_CONFIG_FILES, type ConfigFunction, type LoadedProject, type ProjectConfig } from "./project-config.js";
