/**
 * Which models and layers `train()` is updating right now. While one trains, calls that
 * change its state (merge, switch, add, delete, dispose) are refused: from an `onStep`
 * callback or a second un-awaited `train()`, they would interleave with the optimizer's
 * updates and leave it stepping freed or swapped variables.
 */
const training = new WeakSet<object>();

/** Mark `owners` as training until the returned release function is called. */
export function lockForTraining(where: string, owners: readonly object[]): () => void {
  for (const o of owners) {
    if (training.has(o)) throw new Error(`${where}: this model is already being trained by another train() call; await it before starting another`);
  }
  for (const o of owners) training.add(o);
  return () => {
    for (const o of owners) training.delete(o);
  };
}

/** Throw when `owner` is being trained: `what` (e.g. "merge()") would change it mid-run. */
export function assertNotTraining(where: string, owner: object, what: string): void {
  if (training.has(owner)) throw new Error(`${where}: cannot ${what} while train() is updating this model; call it after train() resolves`);
}

export function isTraining(owner: object): boolean {
  return training.has(owner);
}
