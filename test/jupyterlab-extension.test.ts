// JupyterLab with Plotly's extension: charts drawn from Plotly's JSON (see jupyterlab-e2e.ts).
import { jupyterLabSuite } from './jupyterlab-e2e.js';

jupyterLabSuite(true);
