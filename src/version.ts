/** The version of lora-tfjs (kept equal to package.json's by a test), recorded in the files it writes. */
export const VERSION = '0.1.0';
