// Kept only because test/client.test.ts (another engineer's file) imports
// repositoryRoot from here. Everything the tests share is in test/support/.
export { repositoryRoot } from "./support/spawn.ts";
