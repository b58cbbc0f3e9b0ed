// JupyterLab without Plotly's extension: charts drawn by their HTML fallback (see jupyterlab-e2e.ts).
import { jupyterLabSuite } from './jupyterlab-e2e.js';

jupyterLabSuite(false);
