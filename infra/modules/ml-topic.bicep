// The Azure ML workspace's system topic (run and model events → lifecycle), in the workspace's group.
param location string
param tags object
param workspaceName string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource topic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: 'evgst-${workspaceName}'
  location: location
  tags: tags
  properties: { source: workspace.id, topicType: 'Microsoft.MachineLearningServices.Workspaces' }
}

output name string = topic.name
